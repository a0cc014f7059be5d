use super::*;

/// A window of ten samples of `avg` starting at `start`.
fn window(avg: f64, start: i64) -> WindowResult<SeriesKey, Stats> {
    let mut value = Stats::default();
    for _ in 0..10 {
        value.add(avg);
    }
    WindowResult {
        key: ("h".into(), "m".into()),
        window: flowline_runtime::TimeWindow {
            start,
            end: start + 10_000,
        },
        value,
        update: false,
    }
}

fn run(values: &[f64], cfg: AnomalySettings) -> Vec<(usize, AnomalyDoc)> {
    let d = Detector(cfg);
    let mut s = DetectorState::default();
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let w = window(*v, i as i64 * 10_000);
        let verdict = d.assess(&mut s, w.value.avg(), w.window.start);
        if let Some(a) = AnomalyDoc::of(&w, &verdict) {
            out.push((i, a));
        }
    }
    out
}

fn noise(n: usize) -> Vec<f64> {
    // A deterministic wiggle of ±1 around 50.
    (0..n).map(|i| 50.0 + ((i * 7) % 5) as f64 - 2.0).collect()
}

#[test]
fn a_sustained_spike_is_reported_once_after_k_windows() {
    let mut v = noise(40);
    for x in &mut v[20..24] {
        *x += 40.0;
    }
    let found = run(&v, AnomalySettings::default());
    assert_eq!(found.len(), 1, "{found:?}");
    let (i, a) = &found[0];
    assert_eq!(*i, 21, "confirmed on the second anomalous window");
    assert_eq!(a.episode_start, format_rfc3339_ms(200_000));
    assert_eq!(a.direction, "above");
    assert!(a.z_score >= 4.0 && a.explanation.contains("2 windows in a row"));
}

#[test]
fn a_single_outlier_window_is_not_reported_and_does_not_move_the_baseline() {
    let mut v = noise(40);
    v[20] += 40.0;
    assert!(run(&v, AnomalySettings::default()).is_empty());
    let d = Detector(AnomalySettings::default());
    let mut s = DetectorState::default();
    for (i, x) in v[..20].iter().enumerate() {
        d.assess(&mut s, *x, i as i64);
    }
    let before = s.mean;
    d.assess(&mut s, v[20], 20);
    assert_eq!(s.mean, before);
}

#[test]
fn nothing_is_reported_while_warming_up_or_on_steady_noise() {
    let mut v = noise(5);
    v[3] = 500.0;
    v[4] = 500.0;
    assert!(run(&v, AnomalySettings::default()).is_empty());
    assert!(run(&noise(500), AnomalySettings::default()).is_empty());
}

#[test]
fn a_lasting_shift_becomes_the_new_baseline() {
    let mut v = noise(30);
    v.extend(noise(100).iter().map(|x| x + 100.0));
    let cfg = AnomalySettings {
        relearn_after: 10,
        ..Default::default()
    };
    let found = run(&v, cfg);
    assert_eq!(found.len(), 1, "one episode, then relearned: {found:?}");
}

#[test]
fn a_key_has_a_forget_timer_per_period_not_per_window() {
    let d = Detector(AnomalySettings {
        forget_after_ms: 60_000,
        ..AnomalySettings::default()
    });
    // Windows every 10 s for an hour: one timer a minute, each at the
    // end of the minute after the window's.
    let mut before = None;
    let mut timers = Vec::new();
    for start in (0..3_600_000).step_by(10_000) {
        timers.extend(d.forget_timer(before, start));
        before = Some(start);
    }
    assert_eq!(timers.len(), 60);
    assert_eq!(timers[..2], [120_000, 180_000]);
    // A key new to the detector (or restored without timers) gets one.
    assert_eq!(d.forget_timer(None, 65_000), Some(180_000));
    assert_eq!(d.forget_timer(Some(-5_000), 5_000), Some(120_000));
}

#[test]
fn the_explanation_keeps_four_significant_digits_at_any_scale() {
    assert_eq!(brief(49.99731), "50.00");
    assert_eq!(brief(0.0012346), "0.001235");
    assert_eq!(brief(-1e-12), "-1.000e-12");
    assert_eq!(brief(2.5e250), "2.500e250");
    assert_eq!(brief(123_456_789.0), "123456789");
    assert_eq!(brief(0.0), "0");
    let mut v = noise(40);
    for x in &mut v {
        *x *= 1e-12;
    }
    for x in &mut v[20..24] {
        *x *= 10.0;
    }
    let found = run(&v, AnomalySettings::default());
    let text = &found[0].1.explanation;
    assert!(
        text.contains("its baseline 5.00") && text.contains("e-11"),
        "{text}"
    );
    assert!(
        !text.contains("baseline 0.000") && text.contains("averaged 5e-10 "),
        "{text}"
    );
}

#[test]
fn settings_are_checked() {
    let e = AnomalySettings {
        alpha: 0.0,
        ..Default::default()
    }
    .check()
    .unwrap_err();
    assert_eq!(e.0, "anomaly.alpha");
    // A period of 0 would divide by zero in the forget timer.
    let e = AnomalySettings {
        forget_after_ms: 0,
        ..Default::default()
    }
    .check()
    .unwrap_err();
    assert_eq!(e.0, "anomaly.forget_after");
    // |z| reaches 1000 only for a series leaving 0.
    let e = AnomalySettings {
        threshold: 1000.0,
        ..Default::default()
    }
    .check()
    .unwrap_err();
    assert_eq!(e.0, "anomaly.threshold");
    assert!(AnomalySettings::default().check().is_ok());
}
