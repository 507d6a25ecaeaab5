//! Records of failed asynchronous invocations, in the shape Lambda sends to an on-failure
//! destination.
//!
//! Lambda retries nothing here (`MaximumRetryAttempts` = 0): the first failure of an `Event`
//! invocation exhausts its retries, so `condition` is always `RetriesExhausted` and
//! `approximateInvokeCount` is 1. The record carries the original event so that nothing is lost.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::function::Failure;

/// The JSON record for a failed event, as written to the on-failure queue.
pub(crate) fn failure_record(
    function_arn: &str,
    request_id: &str,
    payload: &[u8],
    failure: &Failure,
) -> String {
    // Events are checked to be JSON when accepted; keep any other payload as text.
    let request_payload: Value = serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()));
    let response_payload: Value = serde_json::from_slice(&failure.body).unwrap_or_else(
        |_| json!({ "errorType": failure.error_type, "errorMessage": failure.message }),
    );
    json!({
        "version": "1.0",
        "timestamp": format_timestamp(SystemTime::now()),
        "requestContext": {
            "requestId": request_id,
            "functionArn": format!("{function_arn}:$LATEST"),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 1,
        },
        "requestPayload": request_payload,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": response_payload,
    })
    .to_string()
}

/// RFC 3339 in UTC with milliseconds, e.g. `2019-11-24T23:08:25.651Z`.
pub(crate) fn format_timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::function::FailureKind;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let time = UNIX_EPOCH + Duration::from_millis(1_574_637_305_651);
        assert_eq!(format_timestamp(time), "2019-11-24T23:15:05.651Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_timestamp(leap_day), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn record_has_the_destination_shape() {
        let failure = Failure::new(
            FailureKind::Timeout,
            "Sandbox.Timedout",
            "Task timed out".to_string(),
        );
        let record = failure_record("arn:fn", "request-1", br#"{"n": 1}"#, &failure);
        let record: Value = serde_json::from_str(&record).unwrap();
        assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
        assert_eq!(record["requestContext"]["requestId"], "request-1");
        assert_eq!(record["requestPayload"], json!({"n": 1}));
        assert_eq!(record["responseContext"]["functionError"], "Unhandled");
        assert_eq!(record["responsePayload"]["errorType"], "Sandbox.Timedout");
        assert_eq!(record["responsePayload"]["errorMessage"], "Task timed out");
    }
}
