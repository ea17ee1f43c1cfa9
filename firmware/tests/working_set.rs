//! The segmenter's memory: after the first frame, segmenting a frame costs a small, fixed number of heap
//! allocations, none per pixel, and its working set does not grow with the frame's size (an 8000×6000 frame
//! is downscaled before any per-pixel buffer is touched). Counted by a global allocator, per thread, so the
//! other tests of this binary running in parallel do not disturb the counts.
//!
//! ```text
//! cargo test --release -p leukoscope --test working_set -- --nocapture
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use leukoscope::segment::Segmenter;
use leukoscope::Frame;

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(bytes: isize, new_block: bool) {
    // `try_with`: thread-local storage may already be gone while a thread shuts down.
    let _ = ON.try_with(|on| {
        if on.get() {
            if new_block {
                ALLOCS.with(|a| a.set(a.get() + 1));
                BYTES.with(|b| b.set(b.get() + bytes.max(0) as usize));
            }
            LIVE.with(|l| {
                l.set(l.get() + bytes);
                PEAK.with(|p| p.set(p.get().max(l.get())));
            });
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize, true);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize), false);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize, true);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations, bytes allocated and peak live bytes of one `segment` call (the result dropped inside).
fn measure(seg: &mut Segmenter, frame: &Frame) -> (usize, usize, usize, usize) {
    ALLOCS.with(|a| a.set(0));
    BYTES.with(|b| b.set(0));
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ON.with(|on| on.set(true));
    let cells = seg.segment(frame).cells.len();
    ON.with(|on| on.set(false));
    (
        ALLOCS.with(Cell::get),
        BYTES.with(Cell::get),
        PEAK.with(Cell::get).max(0) as usize,
        cells,
    )
}

fn smear() -> Frame {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples/smears/BloodImage_00006.jpg");
    Frame::open(&p).expect("bundled smear")
}

/// `frame` scaled up by nearest neighbour (a bigger sensor's frame of the same smear).
fn upscaled(frame: &Frame, w: u32, h: u32) -> Frame {
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let p = frame.pixel(x * frame.width() / w, y * frame.height() / h);
            data.extend_from_slice(&p);
        }
    }
    Frame::new(w, h, data).expect("geometry")
}

#[test]
fn a_frame_costs_few_allocations_none_per_pixel_and_a_bounded_working_set() {
    let small = smear();
    let big = upscaled(&small, 8000, 6000);
    let mut seg = Segmenter::default();
    // First frame: the buffers grow to the training scale.
    let first = measure(&mut seg, &small);
    let warm = seg.working_set_bytes();
    let again = measure(&mut seg, &small);
    let huge = measure(&mut seg, &big);
    let after_huge = seg.working_set_bytes();
    println!(
        "segmenter working set after a 640x480 frame: {warm} bytes; after an 8000x6000 one: {after_huge} bytes"
    );
    for (what, (allocs, bytes, peak, cells)) in [
        ("640x480, first frame", first),
        ("640x480, next frame", again),
        ("8000x6000 frame", huge),
    ] {
        println!(
            "{what}: {cells} cells, {allocs} allocations, {bytes} bytes allocated, peak {peak} bytes live"
        );
    }
    assert!(again.3 >= 1, "the bundled smear's white cell is found");
    assert_eq!(huge.3, again.3, "same smear, same cells");
    // A warm frame allocates a handful of blocks, the same number for 0.3 M and 48 M pixels.
    assert!(again.0 <= 16, "{} allocations for one frame", again.0);
    assert!(huge.0 <= again.0 + 2, "{} vs {}", huge.0, again.0);
    // What it allocates is about one training-scale copy of the frame (320×240×3 = 230 kB) plus a little,
    // not a copy of the 144 MB input.
    assert!(
        huge.1 <= 400_000,
        "{} bytes allocated for the 8000x6000 frame",
        huge.1
    );
    assert!(huge.2 <= 400_000, "{} bytes live at the peak", huge.2);
    // The kept buffers are sized by the training scale, not by the input frame.
    assert!(after_huge <= warm + warm / 10, "{after_huge} vs {warm}");

    // The largest graph cut: one violet blob filling most of the frame, so the crop is the whole
    // training-scale frame (every buffer at its largest: the bound of the working set).
    let mut data = Vec::with_capacity(640 * 480 * 3);
    for y in 0..480i32 {
        for x in 0..640i32 {
            let blob = (x - 320).pow(2) + (y - 240).pow(2) < 230 * 230;
            data.extend_from_slice(&if blob {
                [105, 75, 175]
            } else {
                [205, 200, 202]
            });
        }
    }
    let blob = Frame::new(640, 480, data).expect("geometry");
    let worst = measure(&mut seg, &blob);
    let bound = seg.working_set_bytes();
    println!(
        "whole-frame blob: {} cells, {} allocations; segmenter working set now {bound} bytes (the bound)",
        worst.3, worst.0
    );
    assert!(bound <= 24 << 20, "{bound} bytes of buffers");
    let again = measure(&mut seg, &small);
    assert!(again.0 <= 16, "still a handful of allocations: {}", again.0);
}
