//! The numbers behind the plots and tables, in plain Rust: reliability bins
//! and expected calibration error, the accuracy/coverage sweep, the worst
//! classes, the most-confused pairs, the confusion sub-matrix of the classes
//! with the most errors, the throughput over time.
//!
//! No drawing and no I/O here, so every figure is unit-tested on small
//! hand-computed inputs.
//!
//! May use: nothing else of the crate.

use report::{ClassAccuracy, ConfusionEntry, EvalReport, TimelinePoint};

/// One prediction as calibration sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The top-1 probability.
    pub confidence: f64,
    /// Top-1 == label.
    pub correct: bool,
}

/// The (confidence, correct) of every sample that has a top-1.
pub fn scored(report: &EvalReport) -> Vec<Scored> {
    report
        .samples
        .iter()
        .filter(|s| !s.top5.is_empty())
        .map(|s| Scored {
            confidence: s.confidence().clamp(0.0, 1.0),
            correct: s.correct,
        })
        .collect()
}

/// One confidence bin of a reliability diagram: `[lo, hi)` (the last bin
/// includes 1.0).
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    /// Mean confidence of the bin's samples (0 when empty).
    pub confidence: f64,
    /// Fraction of the bin's samples that are correct (0 when empty).
    pub accuracy: f64,
}

/// A reliability diagram: equal-width bins over [0, 1] and the expected
/// calibration error `ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reliability {
    pub bins: Vec<Bin>,
    /// 0 when there is no sample.
    pub ece: f64,
    pub samples: usize,
}

/// Bins `scored` into `n_bins` equal-width confidence bins (at least one).
pub fn reliability(scored: &[Scored], n_bins: usize) -> Reliability {
    let n_bins = n_bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); n_bins];
    for s in scored {
        let b = ((s.confidence * n_bins as f64) as usize).min(n_bins - 1);
        sums[b].0 += 1;
        sums[b].1 += s.confidence;
        sums[b].2 += usize::from(s.correct);
    }
    let total = scored.len();
    let mut ece = 0.0;
    let bins = sums
        .iter()
        .enumerate()
        .map(|(i, &(count, conf_sum, correct))| {
            let (confidence, accuracy) = if count == 0 {
                (0.0, 0.0)
            } else {
                (conf_sum / count as f64, correct as f64 / count as f64)
            };
            if total > 0 {
                ece += count as f64 / total as f64 * (accuracy - confidence).abs();
            }
            Bin {
                lo: i as f64 / n_bins as f64,
                hi: (i + 1) as f64 / n_bins as f64,
                count,
                confidence,
                accuracy,
            }
        })
        .collect();
    Reliability {
        bins,
        ece,
        samples: total,
    }
}

/// One point of the accuracy/coverage sweep: keeping the predictions with
/// confidence ≥ `threshold` covers `coverage` of the samples, of which
/// `accuracy` are correct.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoveragePoint {
    pub threshold: f64,
    pub coverage: f64,
    pub accuracy: f64,
}

/// The threshold sweep, most confident first: one point per distinct
/// confidence (ties enter together), ending at coverage 1.
pub fn coverage(scored: &[Scored]) -> Vec<CoveragePoint> {
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let n = sorted.len();
    let mut out = Vec::new();
    let mut correct = 0usize;
    for (i, s) in sorted.iter().enumerate() {
        correct += usize::from(s.correct);
        let last_of_tie = sorted
            .get(i + 1)
            .is_none_or(|next| next.confidence != s.confidence);
        if last_of_tie {
            out.push(CoveragePoint {
                threshold: s.confidence,
                coverage: (i + 1) as f64 / n as f64,
                accuracy: correct as f64 / (i + 1) as f64,
            });
        }
    }
    out
}

/// Errors of a class as the true label (`n − correct`).
pub fn errors(c: &ClassAccuracy) -> usize {
    c.n.saturating_sub(c.correct)
}

/// The `k` classes with the lowest accuracy (ties: more errors first, then
/// class index), worst first. Classes without images are left out.
pub fn worst_classes(per_class: &[ClassAccuracy], k: usize) -> Vec<&ClassAccuracy> {
    let mut all: Vec<&ClassAccuracy> = per_class.iter().filter(|c| c.n > 0).collect();
    all.sort_by(|a, b| {
        a.accuracy
            .total_cmp(&b.accuracy)
            .then(errors(b).cmp(&errors(a)))
            .then(a.index.cmp(&b.index))
    });
    all.truncate(k);
    all
}

/// The per-class accuracies sorted ascending (classes without images left
/// out).
pub fn sorted_accuracies(per_class: &[ClassAccuracy]) -> Vec<f64> {
    let mut v: Vec<f64> = per_class
        .iter()
        .filter(|c| c.n > 0)
        .map(|c| c.accuracy)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The `k` largest true → predicted counts (ties: true index, then predicted
/// index), diagonal entries left out.
pub fn most_confused(confusion: &[ConfusionEntry], k: usize) -> Vec<&ConfusionEntry> {
    let mut all: Vec<&ConfusionEntry> = confusion
        .iter()
        .filter(|e| e.true_index != e.predicted_index && e.count > 0)
        .collect();
    all.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.true_index.cmp(&b.true_index))
            .then(a.predicted_index.cmp(&b.predicted_index))
    });
    all.truncate(k);
    all
}

/// The confusion matrix restricted to a few classes.
#[derive(Debug, Clone, PartialEq)]
pub struct SubMatrix {
    /// Class indices, most errors first; rows (true) and columns (predicted)
    /// follow this order.
    pub classes: Vec<usize>,
    /// `cells[row][col]`: images of class `classes[row]` predicted as
    /// `classes[col]`; the diagonal holds the class's correct count.
    pub cells: Vec<Vec<usize>>,
}

impl SubMatrix {
    /// The largest off-diagonal cell (0 when there is none).
    pub fn max_off_diagonal(&self) -> usize {
        self.cells
            .iter()
            .enumerate()
            .flat_map(|(r, row)| row.iter().enumerate().filter(move |(c, _)| *c != r))
            .map(|(_, &v)| v)
            .max()
            .unwrap_or(0)
    }
}

/// The `k` classes involved in the most confusions (as true plus as
/// predicted class; ties by class index) and the counts between them.
pub fn confusion_submatrix(
    per_class: &[ClassAccuracy],
    confusion: &[ConfusionEntry],
    k: usize,
) -> SubMatrix {
    let mut involved: std::collections::BTreeMap<usize, usize> = Default::default();
    for e in confusion
        .iter()
        .filter(|e| e.true_index != e.predicted_index)
    {
        *involved.entry(e.true_index).or_default() += e.count;
        *involved.entry(e.predicted_index).or_default() += e.count;
    }
    let mut ranked: Vec<(usize, usize)> = involved.into_iter().filter(|&(_, n)| n > 0).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let classes: Vec<usize> = ranked.into_iter().take(k).map(|(c, _)| c).collect();
    let pos = |class: usize| classes.iter().position(|&c| c == class);
    let mut cells = vec![vec![0usize; classes.len()]; classes.len()];
    for e in confusion
        .iter()
        .filter(|e| e.true_index != e.predicted_index)
    {
        if let (Some(r), Some(c)) = (pos(e.true_index), pos(e.predicted_index)) {
            cells[r][c] += e.count;
        }
    }
    for c in per_class {
        if let Some(i) = pos(c.index) {
            cells[i][i] = c.correct;
        }
    }
    SubMatrix { classes, cells }
}

/// Images per second between consecutive timeline points, at the later
/// point's time; intervals without elapsed time are skipped.
pub fn throughput(timeline: &[TimelinePoint]) -> Vec<(f64, f64)> {
    let mut points: Vec<TimelinePoint> = timeline.to_vec();
    points.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let mut out = Vec::new();
    let mut prev = TimelinePoint::default();
    for p in points {
        let dt = p.seconds - prev.seconds;
        if dt > 0.0 && p.images >= prev.images {
            out.push((p.seconds, (p.images - prev.images) as f64 / dt));
            prev = p;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(confidence: f64, correct: bool) -> Scored {
        Scored {
            confidence,
            correct,
        }
    }

    fn class(index: usize, n: usize, correct: usize) -> ClassAccuracy {
        ClassAccuracy {
            index,
            synset: format!("n{index:08}"),
            name: format!("class {index}"),
            n,
            correct,
            accuracy: if n == 0 {
                0.0
            } else {
                correct as f64 / n as f64
            },
        }
    }

    fn conf(t: usize, p: usize, count: usize) -> ConfusionEntry {
        ConfusionEntry {
            true_index: t,
            true_synset: String::new(),
            predicted_index: p,
            predicted_synset: String::new(),
            count,
        }
    }

    #[test]
    fn ece_of_a_hand_computed_case() {
        // 2 bins. Bin [0, 0.5): 0.2 (wrong), 0.4 (right): conf 0.3, acc 0.5.
        // Bin [0.5, 1]: 0.9 (right), 1.0 (right), 0.6 (wrong): conf 2.5/3,
        // acc 2/3. ECE = 2/5·|0.5−0.3| + 3/5·|2/3 − 2.5/3| = 0.08 + 0.1 = 0.18.
        let r = reliability(
            &[
                s(0.2, false),
                s(0.4, true),
                s(0.9, true),
                s(1.0, true),
                s(0.6, false),
            ],
            2,
        );
        assert_eq!(r.samples, 5);
        assert_eq!(r.bins.len(), 2);
        assert_eq!(r.bins[0].count, 2);
        assert_eq!(r.bins[1].count, 3);
        assert!((r.bins[0].confidence - 0.3).abs() < 1e-12);
        assert!((r.bins[1].accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.ece - 0.18).abs() < 1e-12, "{}", r.ece);
        assert_eq!((r.bins[1].lo, r.bins[1].hi), (0.5, 1.0));
    }

    #[test]
    fn a_perfectly_calibrated_and_an_empty_case_have_no_ece() {
        let r = reliability(&[s(1.0, true), s(1.0, true)], 10);
        assert_eq!(r.ece, 0.0);
        assert_eq!(r.bins[9].count, 2, "confidence 1.0 goes to the last bin");
        let empty = reliability(&[], 0);
        assert_eq!(empty.bins.len(), 1);
        assert_eq!(empty.ece, 0.0);
    }

    #[test]
    fn the_coverage_sweep_groups_ties() {
        let points = coverage(&[s(0.5, false), s(0.9, true), s(0.7, true), s(0.7, false)]);
        let as_tuples: Vec<(f64, f64, f64)> = points
            .iter()
            .map(|p| (p.threshold, p.coverage, p.accuracy))
            .collect();
        assert_eq!(
            as_tuples,
            [(0.9, 0.25, 1.0), (0.7, 0.75, 2.0 / 3.0), (0.5, 1.0, 0.5)]
        );
        assert!(coverage(&[]).is_empty());
    }

    #[test]
    fn worst_classes_by_accuracy_then_errors_then_index() {
        let per_class = [
            class(0, 10, 9),
            class(1, 4, 2),
            class(2, 10, 5),
            class(3, 0, 0),
            class(4, 2, 1),
        ];
        let worst: Vec<usize> = worst_classes(&per_class, 3)
            .iter()
            .map(|c| c.index)
            .collect();
        // 2 (0.5, 5 errors), 1 (0.5, 2 errors), 4 (0.5, 1 error); 3 has no images.
        assert_eq!(worst, [2, 1, 4]);
        assert_eq!(sorted_accuracies(&per_class), [0.5, 0.5, 0.5, 0.9]);
    }

    #[test]
    fn most_confused_pairs_by_count_and_without_the_diagonal() {
        let confusion = [conf(1, 2, 3), conf(0, 5, 7), conf(4, 4, 9), conf(0, 2, 3)];
        let top: Vec<(usize, usize)> = most_confused(&confusion, 2)
            .iter()
            .map(|e| (e.true_index, e.predicted_index))
            .collect();
        assert_eq!(top, [(0, 5), (0, 2)]);
    }

    #[test]
    fn the_submatrix_keeps_the_classes_with_most_errors() {
        // Involvement: 0 → 5+1 = 6, 1 → 5+2 = 7, 2 → 2+1+1 = 4, 9 → 1.
        let confusion = [conf(0, 1, 5), conf(1, 2, 2), conf(2, 0, 1), conf(9, 2, 1)];
        let per_class = [class(0, 10, 4), class(1, 8, 6), class(2, 5, 2)];
        let m = confusion_submatrix(&per_class, &confusion, 3);
        assert_eq!(m.classes, [1, 0, 2]);
        assert_eq!(m.cells, [[6, 0, 2], [5, 4, 0], [0, 1, 2]]);
        assert_eq!(m.max_off_diagonal(), 5);
        let empty = confusion_submatrix(&per_class, &[], 20);
        assert!(empty.classes.is_empty());
        assert_eq!(empty.max_off_diagonal(), 0);
    }

    #[test]
    fn throughput_between_timeline_points() {
        let t = |seconds, images| TimelinePoint { seconds, images };
        let rates = throughput(&[t(2.0, 100), t(1.0, 40), t(1.0, 40), t(4.0, 200)]);
        assert_eq!(rates, [(1.0, 40.0), (2.0, 60.0), (4.0, 50.0)]);
        assert!(throughput(&[]).is_empty());
    }
}
