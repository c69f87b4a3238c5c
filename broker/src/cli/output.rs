//! How the Kafka commands print: aligned tables for people, JSON for scripts (`--format`), and
//! consumed records as text, JSON lines or a kcat-style format string.

use std::io::Write;

use serde_json::{json, Value};

use crate::records::RecordView;

/// `--format`: tables for people or JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

/// Rows under upper-case headings, columns padded to their widest cell.
#[derive(Debug, Default)]
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Prints `value` as one pretty JSON document.
pub(crate) fn print_json(value: &Value) {
    // Serializing a `Value` cannot fail (its map keys are strings).
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints a table, or `json` in JSON mode.
pub(crate) fn emit(format: Format, table: &Table, json: impl FnOnce() -> Value) {
    match format {
        Format::Table => print!("{}", table.render()),
        Format::Json => print_json(&json()),
    }
}

/// "key=value" lines for a table's heading block.
pub(crate) fn summary(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{:<width$}  {v}\n", k.to_uppercase()))
        .collect()
}

/// One piece of a `--print` format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Headers,
    Timestamp,
    KeyLength,
    ValueLength,
}

/// How `sluice topic consume` prints each record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordFormat {
    /// The value, one per line.
    Text,
    /// One JSON object per line with the record's metadata.
    Json,
    /// A kcat-style format string.
    Pattern(Vec<Piece>),
}

/// Parses a kcat-style format: %t %p %o %k %s %h %T %K %S and %%, with \n \t \r \\ escapes.
pub(crate) fn parse_pattern(text: &str) -> Result<RecordFormat, String> {
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let piece = match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('s') => Piece::Value,
                    Some('h') => Piece::Headers,
                    Some('T') => Piece::Timestamp,
                    Some('K') => Piece::KeyLength,
                    Some('S') => Piece::ValueLength,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    Some(other) => return Err(format!("unknown format directive %{other}")),
                    None => return Err("the format ends with a lone %".into()),
                };
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(piece);
            }
            '\\' => {
                let byte = match chars.next() {
                    Some('n') => b'\n',
                    Some('t') => b'\t',
                    Some('r') => b'\r',
                    Some('\\') => b'\\',
                    Some(other) => return Err(format!("unknown escape \\{other}")),
                    None => return Err("the format ends with a lone \\".into()),
                };
                literal.push(byte);
            }
            other => {
                let mut buf = [0u8; 4];
                literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(RecordFormat::Pattern(pieces))
}

fn length(bytes: &Option<Vec<u8>>) -> String {
    bytes.as_ref().map_or(-1, |b| b.len() as i64).to_string()
}

/// A byte field as JSON: a string when it is UTF-8, else its hex under `<name>_hex`.
fn json_bytes(object: &mut serde_json::Map<String, Value>, name: &str, bytes: &Option<Vec<u8>>) {
    match bytes {
        None => {
            object.insert(name.into(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => {
                object.insert(name.into(), Value::String(text.into()));
            }
            Err(_) => {
                object.insert(name.into(), Value::Null);
                object.insert(format!("{name}_hex"), Value::String(hex(b)));
            }
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl RecordFormat {
    /// Writes one record of `topic`-`partition`.
    pub(crate) fn write(
        &self,
        out: &mut impl Write,
        topic: &str,
        partition: i32,
        record: &RecordView,
    ) -> std::io::Result<()> {
        match self {
            RecordFormat::Text => {
                out.write_all(record.value.as_deref().unwrap_or_default())?;
                out.write_all(b"\n")
            }
            RecordFormat::Json => {
                let mut object = serde_json::Map::new();
                object.insert("topic".into(), json!(topic));
                object.insert("partition".into(), json!(partition));
                object.insert("offset".into(), json!(record.offset));
                object.insert("timestamp".into(), json!(record.timestamp));
                json_bytes(&mut object, "key", &record.key);
                json_bytes(&mut object, "value", &record.value);
                let headers: Vec<Value> = record
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let mut header = serde_json::Map::new();
                        header.insert("key".into(), json!(k));
                        json_bytes(&mut header, "value", v);
                        Value::Object(header)
                    })
                    .collect();
                object.insert("headers".into(), Value::Array(headers));
                serde_json::to_writer(&mut *out, &Value::Object(object))?;
                out.write_all(b"\n")
            }
            RecordFormat::Pattern(pieces) => {
                for piece in pieces {
                    match piece {
                        Piece::Literal(bytes) => out.write_all(bytes)?,
                        Piece::Topic => out.write_all(topic.as_bytes())?,
                        Piece::Partition => write!(out, "{partition}")?,
                        Piece::Offset => write!(out, "{}", record.offset)?,
                        Piece::Key => out.write_all(record.key.as_deref().unwrap_or_default())?,
                        Piece::Value => {
                            out.write_all(record.value.as_deref().unwrap_or_default())?
                        }
                        Piece::Headers => {
                            for (i, (k, v)) in record.headers.iter().enumerate() {
                                if i > 0 {
                                    out.write_all(b",")?;
                                }
                                out.write_all(k.as_bytes())?;
                                out.write_all(b"=")?;
                                out.write_all(v.as_deref().unwrap_or_default())?;
                            }
                        }
                        Piece::Timestamp => write!(out, "{}", record.timestamp)?,
                        Piece::KeyLength => out.write_all(length(&record.key).as_bytes())?,
                        Piece::ValueLength => out.write_all(length(&record.value).as_bytes())?,
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RecordView {
        RecordView {
            offset: 7,
            timestamp: 1_700_000_000_000,
            key: Some(b"k".to_vec()),
            value: Some(b"v\xff".to_vec()),
            headers: vec![("a".into(), Some(b"1".to_vec())), ("n".into(), None)],
        }
    }

    fn written(format: &RecordFormat) -> Vec<u8> {
        let mut out = Vec::new();
        format.write(&mut out, "t", 2, &record()).expect("write");
        out
    }

    #[test]
    fn patterns_expand_every_directive_and_escape() {
        let format = parse_pattern(r"%t/%p/%o %k=%s [%h] %T %K %S 100%%\t\n").expect("parse");
        assert_eq!(
            written(&format),
            b"t/2/7 k=v\xff [a=1,n=] 1700000000000 1 2 100%\t\n".to_vec()
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(
            parse_pattern("%x"),
            Err("unknown format directive %x".into())
        );
        assert!(parse_pattern("abc%").is_err());
        assert!(parse_pattern(r"\q").is_err());
    }

    #[test]
    fn json_records_carry_metadata_and_hex_for_binary() {
        let line = written(&RecordFormat::Json);
        let value: Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(
            value,
            json!({"topic": "t", "partition": 2, "offset": 7, "timestamp": 1_700_000_000_000i64,
                   "key": "k", "value": null, "value_hex": "76ff",
                   "headers": [{"key": "a", "value": "1"}, {"key": "n", "value": null}]})
        );
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["name", "partitions"]);
        table.row(vec!["a-long-name".into(), "3".into()]);
        table.row(vec!["b".into(), "12".into()]);
        assert_eq!(
            table.render(),
            "NAME         PARTITIONS\na-long-name  3\nb            12\n"
        );
    }
}
