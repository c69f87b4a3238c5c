//! `#[transform]`: turns `fn name(record: Record<'_>, out: &mut Output) -> Result<(), Error>` into
//! a Sluice transform module by adding the ABI's wasm exports (`sdk/ABI.md`). The function itself
//! is left as written, so it can be called and unit-tested natively.
//!
//! Written without `syn`/`quote`: all it needs is the function's name, and keeping the SDK free
//! of heavy build dependencies keeps guest builds fast.

use proc_macro::{TokenStream, TokenTree};

/// Marks the function a transform module runs on every record.
#[proc_macro_attribute]
pub fn transform(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error("#[transform] takes no arguments");
    }
    let mut tokens = item.clone().into_iter();
    let mut name = None;
    while let Some(token) = tokens.next() {
        if let TokenTree::Ident(ident) = &token {
            if ident.to_string() == "fn" {
                if let Some(TokenTree::Ident(n)) = tokens.next() {
                    name = Some(n.to_string());
                }
                break;
            }
        }
    }
    let Some(name) = name else {
        return error("#[transform] goes on a function: fn name(record: Record<'_>, out: &mut Output) -> Result<(), Error>");
    };
    let exports = format!(
        r#"
#[cfg(target_arch = "wasm32")]
const _: () = {{
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_abi_version() -> i32 {{ ::sluice_sdk::ABI_VERSION }}
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_alloc(len: i32) -> i32 {{ ::sluice_sdk::__private::wasm_alloc(len) }}
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_init(ptr: i32, len: i32) -> i64 {{ ::sluice_sdk::__private::wasm_init(ptr, len) }}
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_on_batch(ptr: i32, len: i32) -> i64 {{ ::sluice_sdk::__private::wasm_on_batch(ptr, len, {name}) }}
}};
"#
    );
    let mut out = item;
    match exports.parse::<TokenStream>() {
        Ok(extra) => out.extend(extra),
        Err(e) => return error(&format!("internal error generating exports: {e}")),
    }
    out
}

/// Marks the function a sink module calls with each batch of records:
/// `fn name(records: &[Record<'_>]) -> Result<(), SinkError>`.
#[proc_macro_attribute]
pub fn sink(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error("#[sink] takes no arguments");
    }
    let Some(name) = fn_name(&item) else {
        return error(
            "#[sink] goes on a function: fn name(records: &[Record<'_>]) -> Result<(), SinkError>",
        );
    };
    with_exports(item, &name, "sluice_on_sink_batch", "wasm_on_sink_batch")
}

fn fn_name(item: &TokenStream) -> Option<String> {
    let mut tokens = item.clone().into_iter();
    while let Some(token) = tokens.next() {
        if let TokenTree::Ident(ident) = &token {
            if ident.to_string() == "fn" {
                if let Some(TokenTree::Ident(n)) = tokens.next() {
                    return Some(n.to_string());
                }
                return None;
            }
        }
    }
    None
}

fn with_exports(item: TokenStream, name: &str, entry: &str, glue: &str) -> TokenStream {
    let exports = format!(
        r#"
#[cfg(target_arch = "wasm32")]
const _: () = {{
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_abi_version() -> i32 {{ ::sluice_sdk::ABI_VERSION }}
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_alloc(len: i32) -> i32 {{ ::sluice_sdk::__private::wasm_alloc(len) }}
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_init(ptr: i32, len: i32) -> i64 {{ ::sluice_sdk::__private::wasm_init(ptr, len) }}
    #[unsafe(no_mangle)]
    pub extern "C" fn {entry}(ptr: i32, len: i32) -> i64 {{ ::sluice_sdk::__private::{glue}(ptr, len, {name}) }}
}};
"#
    );
    let mut out = item;
    match exports.parse::<TokenStream>() {
        Ok(extra) => out.extend(extra),
        Err(e) => return error(&format!("internal error generating exports: {e}")),
    }
    out
}

fn error(message: &str) -> TokenStream {
    format!("compile_error!({message:?});")
        .parse()
        .unwrap_or_default()
}
