//! A topic's time retention against the records written to it.
//!
//! A topic with `message.timestamp.type = CreateTime` (the default) keeps a
//! record by the timestamp the producer gave it, and the broker deletes a
//! log segment once its newest timestamp is older than `retention.ms`.
//! Worse, a segment whose first record is that old is rolled at the next
//! write, so such a record sits alone and goes at the broker's next
//! retention check (every `log.retention.check.interval.ms`, 5 min by
//! default). A window of last month written to a topic with the default 7
//! days of retention is thus gone minutes later, with nothing said
//! anywhere: a replay or a backfill loses its output silently.
//!
//! So the sink reads the topic's `retention.ms`, `cleanup.policy` and
//! timestamp type when it starts (a topic that only compacts deletes
//! nothing by time, whatever its `retention.ms`), and refuses (as a bad record, with the reason and the fix) a
//! record whose timestamp is already past the retention. The runtime writes
//! it to the dead-letter output, which, when it is a Kafka topic too,
//! writes it again without its timestamp. A retention changed while the
//! job runs is seen at its next start.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowline_connector_api::time::try_format_rfc3339_ms;

/// How long the topic keeps a record by its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retention {
    /// Records are kept regardless of their timestamp: `retention.ms` is
    /// -1, the topic only compacts, the broker stamps records itself
    /// (`LogAppendTime`), or the configuration could not be read (warned
    /// at start).
    Unlimited,
    /// Records whose timestamp is older than this many ms are deleted.
    Ms(i64),
}

impl Retention {
    /// From the topic's `retention.ms` and `message.timestamp.type`.
    pub(crate) fn from_config(retention_ms: Option<&str>, timestamp_type: Option<&str>) -> Self {
        if timestamp_type == Some("LogAppendTime") {
            return Self::Unlimited;
        }
        match retention_ms.and_then(|v| v.trim().parse::<i64>().ok()) {
            Some(ms) if ms >= 0 => Self::Ms(ms),
            _ => Self::Unlimited,
        }
    }

    /// Reads `topic`'s configuration. A broker that does not answer, or an
    /// account without `DescribeConfigs` on the topic, gives `Unlimited`
    /// with a warning: the check is a safeguard, not a condition to write.
    pub(crate) fn read(client: &rdkafka::ClientConfig, topic: &str, timeout: Duration) -> Self {
        match crate::admin::topic_configs(client, topic, timeout) {
            // A topic that only compacts deletes nothing by time, whatever
            // its `retention.ms` (which every topic has).
            Ok(c) => Self::from_config(
                crate::admin::cleanup_policy(&c)
                    .deletes
                    .then(|| c.get("retention.ms").map(String::as_str))
                    .flatten(),
                c.get("message.timestamp.type").map(String::as_str),
            ),
            Err(error) => {
                tracing::warn!(topic, %error, "cannot read the topic's retention.ms: records with a timestamp older than it would be written and then deleted by the broker without notice. Fix: allow DescribeConfigs on the topic");
                Self::Unlimited
            }
        }
    }

    /// `Err(reason)` when a record with timestamp `ts` written at `now_ms`
    /// is already past the retention of `topic`.
    pub(crate) fn admit(self, topic: &str, ts: Option<i64>, now_ms: i64) -> Result<(), String> {
        let (Self::Ms(keep), Some(ts)) = (self, ts) else {
            return Ok(());
        };
        if ts >= now_ms.saturating_sub(keep) {
            return Ok(());
        }
        let when = try_format_rfc3339_ms(ts).unwrap_or_else(|| format!("{ts} ms since the epoch"));
        let keep_for = humantime::format_duration(Duration::from_millis(keep as u64));
        Err(format!(
            "the record's timestamp {when} is older than topic `{topic}`'s retention.ms ({keep} = {keep_for}): the broker would delete it at its next retention check, within minutes, so it is not written there. Fix: raise the topic's retention.ms (-1 keeps records for ever), or set its message.timestamp.type to LogAppendTime"
        ))
    }
}

/// The wall clock in ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_topic_settings_decide_the_limit() {
        let r = Retention::from_config;
        assert_eq!(
            r(Some("604800000"), Some("CreateTime")),
            Retention::Ms(7 * DAY)
        );
        assert_eq!(r(Some("604800000"), None), Retention::Ms(7 * DAY));
        assert_eq!(r(Some("-1"), Some("CreateTime")), Retention::Unlimited);
        assert_eq!(
            r(Some("604800000"), Some("LogAppendTime")),
            Retention::Unlimited
        );
        assert_eq!(r(None, None), Retention::Unlimited);
        assert_eq!(r(Some("0"), None), Retention::Ms(0));
    }

    #[test]
    fn a_record_past_the_retention_is_refused_with_the_fix() {
        let now = 1_796_500_000_000;
        let week = Retention::Ms(7 * DAY);
        assert!(
            week.admit("t", Some(now - 7 * DAY), now).is_ok(),
            "at the limit"
        );
        assert!(week.admit("t", Some(now), now).is_ok());
        assert!(week.admit("t", Some(now + DAY), now).is_ok(), "the future");
        assert!(
            week.admit("t", None, now).is_ok(),
            "no timestamp: the broker's clock"
        );
        let e = week.admit("out", Some(now - 7 * DAY - 1), now).unwrap_err();
        assert!(
            e.contains("2026-11-28T19:46:39.999Z") && e.contains("`out`"),
            "{e}"
        );
        assert!(
            e.contains("604800000 = 7days") && e.contains("Fix: raise"),
            "{e}"
        );
        let e = week.admit("out", Some(i64::MIN), now).unwrap_err();
        assert!(e.contains("ms since the epoch"), "{e}");
        assert!(Retention::Unlimited.admit("t", Some(0), now).is_ok());
    }
}
