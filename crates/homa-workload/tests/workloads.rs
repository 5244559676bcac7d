//! The embedded workloads against the CSV files they come from: the
//! reduction reproduces the kernel benchmark's CDFs, the computed means
//! match the means the files record, and sampling with a fixed seed
//! reproduces every mean within 1%.

#![allow(non_snake_case)]

use homa_workload::{Reduction, Rng, SizeDist, Variant, Workload};

/// The value of `key=<number>` in a CSV's comment lines.
fn header_value(csv: &str, key: &str) -> f64 {
    for line in csv.lines().filter(|l| l.starts_with('#')) {
        for word in line.split_whitespace() {
            if let Some(v) = word.strip_prefix(key).and_then(|w| w.strip_prefix('=')) {
                return v.parse().unwrap();
            }
        }
    }
    panic!("no {key} in header");
}

fn raw_csv(w: Workload) -> String {
    let path = format!(
        "{}/workloads/{}_raw.csv",
        env!("CARGO_MANIFEST_DIR"),
        w.name()
    );
    std::fs::read_to_string(path).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b
}

#[test]
fn reduce__reproduces_cp_node_csvs() {
    for w in Workload::PAPER {
        let ours = w.raw().reduce(Reduction::CP_NODE);
        let theirs = w.cp_node();
        assert_eq!(ours.points().len(), theirs.points().len(), "{w}");
        for (a, b) in ours.points().iter().zip(theirs.points()) {
            assert_eq!(a.length, b.length, "{w}");
            assert!((a.fraction - b.fraction).abs() < 1e-8, "{w}: {a:?} {b:?}");
        }
    }
}

#[test]
fn mean__matches_recorded_means() {
    for w in Workload::ALL {
        let csv = raw_csv(w);
        let raw = w.raw();
        let (m, h) = (raw.mean(), header_value(&csv, "mean_bytes"));
        assert!(rel(m, h) < 1e-8, "{w} {m} {h}");
        let trunc = raw.truncate(1_000_000).mean();
        assert!(
            rel(trunc, header_value(&csv, "mean_truncated_at_1e6")) < 1e-8,
            "{w}"
        );
        if let Some(cp) = w.cp_node_csv() {
            // These files print fractions with 9 decimals.
            let (m, h) = (w.cp_node().mean(), header_value(cp, "mean"));
            assert!(rel(m, h) < 1e-6, "{w} {m} {h}");
        }
    }
    // The table in the reference: W1 189 B ... W5 2.56 MB.
    let means: Vec<f64> = Workload::PAPER.iter().map(|w| w.raw().mean()).collect();
    let paper = [189.17, 441.60, 2927.68, 127_796.64, 2_564_689.68];
    for (m, p) in means.iter().zip(paper) {
        assert!(rel(*m, p) < 1e-4, "{m} {p}");
    }
}

/// Samples enough lengths that 1% of the mean is four standard errors, and
/// checks the sample mean against the distribution's mean.
fn sampled_mean_within_1pct(dist: &SizeDist, seed: u64) {
    let mean = dist.mean();
    let var = dist.expectation(|l| (f64::from(l) - mean).powi(2));
    let n = ((4.0 * var.sqrt() / (0.01 * mean)).powi(2) as u64).clamp(100_000, 100_000_000);
    let mut rng = Rng::new(seed);
    let mut sum = 0u64;
    for _ in 0..n {
        sum += u64::from(dist.sample(&mut rng));
    }
    let got = sum as f64 / n as f64;
    assert!(
        rel(got, mean) < 0.01,
        "sample mean {got} vs {mean} over {n}"
    );
}

macro_rules! sampling_tests {
    ($($name:ident: $w:expr,)*) => {$(
        #[test]
        fn $name() {
            sampled_mean_within_1pct(&$w.dist(Variant::Raw), 1);
            sampled_mean_within_1pct(&$w.dist(Variant::CpNode), 2);
        }
    )*};
}

sampling_tests! {
    sample__w1_mean_within_1pct: Workload::W1,
    sample__w2_mean_within_1pct: Workload::W2,
    sample__w3_mean_within_1pct: Workload::W3,
    sample__w4_mean_within_1pct: Workload::W4,
    sample__w5_mean_within_1pct: Workload::W5,
    sample__starve_mean_within_1pct: Workload::Starve,
}

#[test]
fn sample__fixed_size() {
    let d = SizeDist::fixed(1000).unwrap();
    let mut rng = Rng::new(3);
    assert!((0..1000).all(|_| d.sample(&mut rng) == 1000));
}
