//! The deployment's configuration: the `--env KEY=VALUE` pairs given at deploy time.

use crate::__private::DEPLOYMENT;

/// The value given for `key` at deploy time.
pub fn get(key: &str) -> Option<String> {
    DEPLOYMENT.with(|d| {
        d.borrow()
            .env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
}

/// Every `KEY=VALUE` pair, in the order given.
pub fn all() -> Vec<(String, String)> {
    DEPLOYMENT.with(|d| d.borrow().env.clone())
}
