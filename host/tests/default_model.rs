//! The embedded default model's card publishes its TEST accuracy (`metrics.TEST`, shown by README and
//! `models/README.md`): evaluating the embedded model on the full Kaggle TEST split through the device's own
//! decoding, preprocessing and tract inference must give exactly that figure and confusion matrix. A change to
//! preprocessing, the classifier or the model file that moves the accuracy fails here until the card (and the
//! figures quoted from it) are measured again.
use leukoscope::model::DEFAULT_NAME;
use leukoscope::{Classifier, ModelSource};
use leukoscope_host::data::{self, Subset};
use leukoscope_host::{eval, predict};

#[test]
fn embedded_model_scores_the_test_accuracy_its_card_publishes() {
    let root = match data::resolve_root(None) {
        Ok(root) => root,
        Err(e) => {
            println!("skipped: the Kaggle data set is needed for the full TEST split ({e:#})");
            return;
        }
    };
    let classifier = Classifier::load(&ModelSource::Embedded).expect("the embedded model loads");
    let card = classifier.card().clone();
    assert_eq!(card.name, DEFAULT_NAME);
    let published = &card.metrics["TEST"];
    assert!(
        published.is_object(),
        "{DEFAULT_NAME}.json publishes no metrics.TEST"
    );
    // TEST is a split folder: the hold-out parameters do not apply to it.
    let samples = Subset::Test.samples(&root, 0.2, 1).expect("TEST lists");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let t = std::time::Instant::now();
    let (scores, failed) = predict::predict(&classifier, &samples, threads);
    println!(
        "{DEFAULT_NAME}: {} TEST images in {:.1} s",
        samples.len(),
        t.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "images failed: {failed:?}");
    let report = eval::evaluate(&scores, &card.arch, "TEST", "").expect("evaluates");
    let accuracy = published["average"]["accuracy"].as_f64();
    println!(
        "accuracy {:.4} %, published {:?}",
        report.average.accuracy * 100.0,
        accuracy.map(|a| a * 100.0)
    );
    assert_eq!(Some(report.n as u64), published["n"].as_u64(), "TEST size");
    // The card stores the ratio correct / n as computed, so equality is exact.
    assert_eq!(Some(report.average.accuracy), accuracy, "TEST accuracy");
    let confusion: Vec<Vec<u64>> =
        serde_json::from_value(published["confusion"].clone()).expect("published confusion matrix");
    assert_eq!(report.confusion, confusion, "TEST confusion matrix");
}
