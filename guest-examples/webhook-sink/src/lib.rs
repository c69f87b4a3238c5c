//! A webhook sink: each batch is POSTed as a JSON array of `{"key","value","offset"}` to
//! `env.URL` (which the deployment must also grant with `sink.http.allow`). 5xx answers and
//! network errors are retryable; 4xx answers are permanent (the record goes to the dead-letter
//! topic, if the deployment has one).

use serde_json::{json, Value};
use sluice_sdk::prelude::*;

#[sink]
pub fn webhook(records: &[Record<'_>]) -> Result<(), SinkError> {
    let url =
        sluice_sdk::config::get("URL").ok_or_else(|| SinkError::permanent("env.URL is not set"))?;
    let text = |b: Option<&[u8]>| {
        b.map_or(Value::Null, |b| {
            Value::String(String::from_utf8_lossy(b).into_owned())
        })
    };
    let body: Vec<Value> = records
        .iter()
        .map(|r| json!({"key": text(r.key()), "value": text(r.value()), "offset": r.offset()}))
        .collect();
    let body = Value::Array(body).to_string();
    let response = sluice_sdk::sink::http(
        "POST",
        &url,
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .map_err(SinkError::retryable)?;
    match response.status {
        200..=299 => Ok(()),
        400..=499 => Err(SinkError::Permanent(format!(
            "{url} answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        ))),
        status => Err(SinkError::Retryable(format!("{url} answered {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::sink::Response;
    use sluice_sdk::testing::SinkHarness;

    #[test]
    fn statuses_map_to_delivered_retry_and_permanent() {
        for (status, expected) in [(200u16, "ok"), (503, "retry"), (400, "permanent")] {
            let run = SinkHarness::new()
                .env("URL", "http://hook.test/in")
                .http(move |req| {
                    assert_eq!(req.method, "POST");
                    assert!(String::from_utf8_lossy(&req.body).contains("\"value\":\"v\""));
                    Response {
                        status,
                        body: b"why".to_vec(),
                    }
                })
                .run(webhook, [OwnedRecord::new().with_value("v")]);
            let got = match run.result {
                Ok(()) => "ok",
                Err(SinkError::Retryable(_)) => "retry",
                Err(SinkError::Permanent(_)) => "permanent",
            };
            assert_eq!(got, expected, "status {status}");
        }
    }
}
