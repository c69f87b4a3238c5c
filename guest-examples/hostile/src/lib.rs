//! A guest that misbehaves on purpose, for the broker's sandboxing tests. Its deployment's env
//! picks how: `MODE=loop` spins forever, `MODE=oom` allocates without end, `MODE=trap` panics,
//! anything else passes records through. With `POISON=TEXT`, only records whose value contains
//! TEXT misbehave; the others pass through.

use sluice_sdk::prelude::*;

#[transform]
pub fn hostile(record: Record<'_>, out: &mut Output) -> Result<(), Error> {
    if let Some(poison) = sluice_sdk::config::get("POISON") {
        let poisoned = record
            .value()
            .is_some_and(|v| v.windows(poison.len()).any(|w| w == poison.as_bytes()));
        if !poisoned {
            return out.write(record.to_owned_record());
        }
    }
    match sluice_sdk::config::get("MODE").as_deref() {
        Some("loop") => {
            let mut n: u64 = 0;
            loop {
                n = n.wrapping_add(std::hint::black_box(1));
                if std::hint::black_box(n) == 0 {
                    break;
                }
            }
            out.write(record.to_owned_record())
        }
        Some("oom") => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Some("trap") => panic!("hostile guest panics on purpose"),
        _ => out.write(record.to_owned_record()),
    }
}
