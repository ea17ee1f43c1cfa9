//! Helpers shared by the host's integration tests: seeded nets with non-trivial batch norms, and the
//! onnxruntime oracle (`tests/ort_run.py` through `LEUKOSCOPE_PYTHON`, set by `scripts/setup.sh`).
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use leukoscope_host::nets::graph::{Builder, ConvSpec, Graph, Op};
use leukoscope_host::nets::Arch;
use tch::{nn, Device, Kind, Tensor};

/// tch's generator is global and the tests run on parallel threads: seeding and drawing happen under this lock
/// so that every run builds the same nets and inputs.
static RNG: Mutex<()> = Mutex::new(());

/// `f` after seeding tch's generator with `seed`, with the generator to itself.
pub fn seeded<T>(seed: i64, f: impl FnOnce() -> T) -> T {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    f()
}

/// Gives every batch norm non-trivial running statistics, scales and shifts, so that folding is exercised.
pub fn randomise_batch_norms(g: &Graph) {
    tch::no_grad(|| {
        for node in &g.nodes {
            if let Op::BatchNorm(bn, _) = &node.op {
                let c = bn.running_mean.size();
                let opts = (Kind::Float, Device::Cpu);
                bn.running_mean
                    .shallow_clone()
                    .copy_(&(Tensor::randn(&c[..], opts) * 0.2));
                bn.running_var
                    .shallow_clone()
                    .copy_(&(Tensor::rand(&c[..], opts) * 1.5 + 0.5));
                if let Some(ws) = &bn.ws {
                    ws.shallow_clone()
                        .copy_(&(Tensor::rand(&c[..], opts) + 0.5));
                }
                if let Some(bs) = &bn.bs {
                    bs.shallow_clone()
                        .copy_(&(Tensor::randn(&c[..], opts) * 0.2));
                }
            }
        }
    });
}

/// The edge net (4 classes) with seeded weights and randomised batch norms.
pub fn edge_net(vs: &nn::VarStore) -> Graph {
    let g = Arch::Edge.build(&vs.root(), 4);
    randomise_batch_norms(&g);
    g
}

/// A net of the operators the edge net does not use: zero padding, depthwise convolution (with a bias, folded
/// with its batch norm), Relu6, a batch norm after an activation (not foldable) and one on flat features, max and average pooling with padding, channel
/// concatenation, scaling, dropout.
pub fn op_zoo(vs: &nn::VarStore) -> Graph {
    let root = vs.root();
    let mut b = Builder::new(&root);
    let x = b.input();
    let x = b.pad("pad", x, [0, 0, 1, 1]);
    let stem = ConvSpec {
        cin: 3,
        cout: 8,
        kernel: [3, 3],
        stride: [2, 2],
        padding: [0, 0],
        groups: 1,
        bias: false,
    };
    let x = b.conv_with("stem/conv", x, stem);
    let x = b.batch_norm("stem/bn", x, 8);
    let r6 = b.relu6("stem/relu6", x);
    let dw = b.conv("dw/conv", r6, 8, 8, 3, 1, 8, true);
    let dw = b.batch_norm("dw/bn", dw, 8);
    let pre = b.batch_norm("pre/bn", r6, 8);
    let pre = b.relu("pre/relu", pre);
    let mp = b.max_pool("maxpool", pre, 3, 1, 1);
    let ap = b.avg_pool("avgpool", dw, 3, 1, 1);
    let cat = b.concat("cat", &[mp, ap, r6]);
    let s = b.scale("scale", cat, 0.5);
    let pw = b.conv_bn_relu("pw", s, 24, 16, 1, 1, 1);
    let dmax = b.max_pool("down/max", pw, 3, 2, 1);
    let davg = b.avg_pool("down/avg", pw, 3, 2, 1);
    let y = b.add("down/add", dmax, davg);
    let y = b.global_avg_pool("pool", y);
    let head_bn = nn::batch_norm1d(&root / "head" / "bn", 16, Default::default());
    let y = b.push("head/bn", Op::BatchNorm(head_bn, 1e-5), &[y]);
    let y = b.dropout("dropout", y, 0.3);
    let y = b.linear("fc", y, 16, 5);
    let g = b.finish(y);
    randomise_batch_norms(&g);
    g
}

pub fn flat(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view(-1)).expect("f32 tensor")
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("host-test-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The onnxruntime version `scripts/setup.sh` pins for the oracle (its `ORT_VERSION=` line, the one place that
/// names it).
pub fn pinned_onnxruntime() -> String {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup.sh");
    let text = std::fs::read_to_string(&setup)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", setup.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("ORT_VERSION="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("{}: no ORT_VERSION= line", setup.display()))
}

/// Fails unless `python`'s onnxruntime is the pinned one: another version is not a trustworthy oracle (1.23
/// computes QLinearConv wrongly on Intel CPUs with AMX, onnxruntime issue 26324), and a test must not pass or
/// fail on whatever happens to be installed.
fn check_onnxruntime_version(python: &std::ffi::OsStr) {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    CHECKED.get_or_init(|| {
        let out = Command::new(python)
            .args(["-c", "import onnxruntime; print(onnxruntime.__version__)"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
        let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let pinned = pinned_onnxruntime();
        assert!(
            out.status.success() && found == pinned,
            "LEUKOSCOPE_PYTHON={python:?} has onnxruntime {found:?}{}, the oracle is pinned to {pinned} \
             (scripts/setup.sh): run `eval \"$(scripts/setup.sh)\"` to install it",
            if out.status.success() {
                String::new()
            } else {
                format!(" ({})", String::from_utf8_lossy(&out.stderr).trim())
            }
        );
    });
}

/// Runs an ONNX model with onnxruntime (through `LEUKOSCOPE_PYTHON` and `tests/ort_run.py`) on `x`, after
/// checking that it is the pinned onnxruntime.
pub fn run_onnxruntime(name: &str, onnx: &[u8], x: &Tensor) -> Vec<f32> {
    let python = std::env::var_os("LEUKOSCOPE_PYTHON").unwrap_or_else(|| {
        panic!(
            "LEUKOSCOPE_PYTHON is not set: the onnxruntime parity tests need the Python oracle; \
             run `eval \"$(scripts/setup.sh)\"` first"
        )
    });
    check_onnxruntime_version(&python);
    let dir = scratch(name);
    let (model, input, output) = (
        dir.join("model.onnx"),
        dir.join("input.f32"),
        dir.join("logits.f32"),
    );
    std::fs::write(&model, onnx).expect("write model");
    let bytes: Vec<u8> = flat(x).iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).expect("write input");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ort_run.py");
    let run = Command::new(&python)
        .arg(&script)
        .args([&model, &input, &output])
        .args(x.size().iter().map(|d| d.to_string()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    assert!(
        run.status.success(),
        "onnxruntime failed ({}):\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let logits = std::fs::read(&output).expect("read logits");
    let _ = std::fs::remove_dir_all(&dir);
    logits
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
