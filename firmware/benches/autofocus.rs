//! Autofocus on the simulator: one full search (coarse sweep + golden section) on a 640×480 BCCD field,
//! including the simulator's rendering of each defocused frame, and the sharpness metric alone.
use criterion::{criterion_group, criterion_main, Criterion};
use leukoscope::autofocus::{autofocus, sharpness, AutofocusConfig};
use leukoscope::board::sim::{microscope, SimConfig};
use leukoscope::board::{Focus, Illumination};
use leukoscope::capture::Camera;

fn bench(c: &mut Criterion) {
    let (mut m, h) = microscope(SimConfig::bundled()).expect("bundled slide loads");
    m.light.set_level(700).expect("sim light");
    m.focus.home().expect("sim focus homes");
    let cfg = AutofocusConfig::default();
    let r = autofocus(&mut m.camera, &mut m.focus, &cfg).expect("autofocus");
    eprintln!(
        "autofocus: {} frames, found {} (best {}), {:.1} ms",
        r.frames,
        r.position,
        h.best_focus(),
        r.elapsed.as_secs_f64() * 1e3
    );
    c.bench_function("autofocus search 640x480 (sim, incl. rendering)", |b| {
        b.iter(|| {
            m.focus.move_to(0).expect("move");
            autofocus(&mut m.camera, &mut m.focus, &cfg).expect("autofocus")
        })
    });
    let frame = m.camera.capture().expect("frame");
    c.bench_function("sharpness 640x480 (downscale 2)", |b| {
        b.iter(|| sharpness(std::hint::black_box(&frame), 2))
    });
    c.bench_function("sim capture 640x480 (defocus render)", |b| {
        b.iter(|| m.camera.capture().expect("frame"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
