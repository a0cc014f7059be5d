//! Window assigners: epoch-aligned tumbling and sliding event-time windows.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A window `[start, end)` in ms since the Unix epoch: start inclusive, end
/// exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First millisecond inside the window.
    pub start: i64,
    /// First millisecond after it.
    pub end: i64,
}

impl TimeWindow {
    /// The last millisecond inside the window (`end - 1`); the window fires
    /// when the watermark reaches it.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }
}

/// How elements are assigned to windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowSpec {
    /// Windows of `size` ms, one after another.
    Tumbling {
        /// Window length, ms.
        size: i64,
    },
    /// Windows of `size` ms starting every `slide` ms.
    Sliding {
        /// Window length, ms.
        size: i64,
        /// Distance between window starts, ms.
        slide: i64,
    },
}

/// Tumbling windows.
#[derive(Debug)]
pub struct Tumbling;

impl Tumbling {
    /// Epoch-aligned tumbling windows of `size` (at least 1 ms).
    pub fn of(size: Duration) -> WindowSpec {
        WindowSpec::Tumbling {
            size: (size.as_millis() as i64).max(1),
        }
    }
}

/// Sliding windows.
#[derive(Debug)]
pub struct Sliding;

impl Sliding {
    /// Epoch-aligned windows of `size` every `slide` (both at least 1 ms).
    pub fn of(size: Duration, slide: Duration) -> WindowSpec {
        WindowSpec::Sliding {
            size: (size.as_millis() as i64).max(1),
            slide: (slide.as_millis() as i64).max(1),
        }
    }
}

impl WindowSpec {
    /// The start of the latest window (tumbling: the only one) holding `ts`.
    #[inline]
    pub fn last_start(&self, ts: i64) -> i64 {
        let step = match *self {
            WindowSpec::Tumbling { size } => size,
            WindowSpec::Sliding { slide, .. } => slide,
        };
        ts - ts.rem_euclid(step)
    }

    /// The window length in ms.
    pub fn size(&self) -> i64 {
        match *self {
            WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => size,
        }
    }

    /// Calls `f` with every window holding `ts`, latest first.
    #[inline]
    pub fn for_each_window(&self, ts: i64, mut f: impl FnMut(TimeWindow)) {
        match *self {
            WindowSpec::Tumbling { size } => {
                let start = self.last_start(ts);
                f(TimeWindow {
                    start,
                    end: start + size,
                })
            }
            WindowSpec::Sliding { size, slide } => {
                let mut start = self.last_start(ts);
                while start > ts - size {
                    f(TimeWindow {
                        start,
                        end: start + size,
                    });
                    start -= slide;
                }
            }
        }
    }

    /// Every window holding `ts`, latest first.
    pub fn windows(&self, ts: i64) -> Vec<TimeWindow> {
        let mut v = Vec::new();
        self.for_each_window(ts, |w| v.push(w));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_is_epoch_aligned_start_inclusive_end_exclusive() {
        let w = Tumbling::of(Duration::from_secs(10));
        assert_eq!(
            w.windows(0),
            vec![TimeWindow {
                start: 0,
                end: 10_000
            }]
        );
        assert_eq!(
            w.windows(9_999),
            vec![TimeWindow {
                start: 0,
                end: 10_000
            }]
        );
        assert_eq!(
            w.windows(10_000),
            vec![TimeWindow {
                start: 10_000,
                end: 20_000
            }]
        );
        assert_eq!(
            w.windows(-1),
            vec![TimeWindow {
                start: -10_000,
                end: 0
            }]
        );
    }

    #[test]
    fn sliding_assigns_size_over_slide_windows() {
        let w = Sliding::of(Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(
            w.windows(12_000),
            vec![
                TimeWindow {
                    start: 10_000,
                    end: 20_000
                },
                TimeWindow {
                    start: 5_000,
                    end: 15_000
                }
            ]
        );
        assert_eq!(w.windows(15_000).len(), 2);
        assert!(w
            .windows(15_000)
            .iter()
            .all(|x| x.start <= 15_000 && 15_000 < x.end));
        // slide larger than size: gaps hold no window
        let g = Sliding::of(Duration::from_secs(1), Duration::from_secs(5));
        assert!(g.windows(2_000).is_empty());
        assert_eq!(
            g.windows(5_500),
            vec![TimeWindow {
                start: 5_000,
                end: 6_000
            }]
        );
    }
}
