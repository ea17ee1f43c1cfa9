//! `leukoscope serve` over HTTP: who may do what on every route, a whole differential (count, review,
//! sign, reports, calibration export), bad input refused with nothing changed, garbage survived, and
//! kill -9 in the middle of a count and of a review losing nothing.
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

mod support;
use support::{add_user, scratch, tiles, Server, PASSWORD, USER};

const POSTS: [&str; 13] = [
    "/signout",
    "/live/focus",
    "/live/autofocus",
    "/live/light",
    "/live/stage",
    "/count/start",
    "/count/pause",
    "/count/resume",
    "/count/stop",
    "/counts/S1/review",
    "/counts/S1/sign",
    "/counts/S1/amend",
    "/calibrate",
];

const GETS: [&str; 11] = [
    "/",
    "/live",
    "/live.jpg",
    "/live.mjpeg",
    "/progress",
    "/api/progress",
    "/counts/S1",
    "/counts/S1/crop/1/0",
    "/counts/S1/report/csv",
    "/calibrate",
    "/calibrate/1.tar",
];

/// Every file of the data folder with its length: "nothing changed" is this unchanged.
fn snapshot(data: &Path) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for dir in [data.to_path_buf(), data.join("counts")] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_file() {
                v.push((e.path().display().to_string(), m.len()));
            }
        }
    }
    v.sort();
    v
}

fn csv_count(csv: &str, class: &str) -> usize {
    // Rows of counted cells: `...,CLASS,confidence,...,counted,error`.
    csv.lines()
        .filter(|l| !l.starts_with('#') && l.ends_with(",true,"))
        // The frame (first field) is quoted and has commas: `"field 3 at (2, 0)",cell,x0,y0,x1,y1,class,...`.
        .filter(|l| {
            l.rsplit_once("\",").map(|(_, rest)| rest.split(',').nth(5)) == Some(Some(class))
        })
        .count()
}

fn fhir_percent(fhir: &Value, code: &str) -> f64 {
    fhir["contained"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == code)
        .unwrap_or_else(|| panic!("no observation {code} in {fhir}"))["valueQuantity"]["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn every_route_refuses_strangers_and_forged_forms_and_changes_nothing() {
    let data = scratch("auth");
    add_user(&data, USER, PASSWORD);
    let server = Server::start(&data, "127.0.0.1:0", &[]);
    let before = snapshot(&data);
    let anon = server.client();
    let me = server.signed_in();
    for path in POSTS {
        let r = anon.post_raw(path, &[("sample", "S1"), ("target", "30"), ("csrf", "x")]);
        assert_eq!(r.status, 401, "{path} without a session: {}", r.body);
        let r = me.post_raw(path, &[("sample", "S1"), ("target", "30")]);
        assert_eq!(r.status, 403, "{path} without a token: {}", r.body);
        let r = me.post_raw(
            path,
            &[("csrf", "forged"), ("sample", "S1"), ("target", "30")],
        );
        assert_eq!(r.status, 403, "{path} with a forged token: {}", r.body);
        assert!(
            r.body.contains("does not belong to your session"),
            "{}",
            r.body
        );
    }
    // Sign-in itself needs the sign-in page's own token.
    let r = anon.post_raw("/signin", &[("user", USER), ("password", PASSWORD)]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        snapshot(&data),
        before,
        "a refused request changed the data folder"
    );
    assert!(
        me.get("/").body.contains("Start count"),
        "the session still works"
    );
    // On loopback pages are open; each is answered.
    for path in GETS {
        assert_ne!(anon.status(path), 401, "{path} on loopback");
    }
    drop(server);

    // Beyond loopback every page needs a session.
    let server = Server::start(&data, "0.0.0.0:0", &[]);
    let anon = server.client();
    for path in GETS {
        assert_eq!(
            anon.status(path),
            401,
            "{path} beyond loopback without a session"
        );
    }
    let me = server.signed_in();
    for path in ["/", "/live", "/api/progress", "/calibrate"] {
        assert_eq!(me.get(path).status, 200, "{path} signed in");
    }

    // Sign-in attempts are throttled, per user: after the free failures even the right password waits.
    let mut intruder = server.client();
    let mut throttled = false;
    for _ in 0..8 {
        let r = intruder.sign_in(USER, "wrong password");
        assert!(intruder.cookie.is_none());
        if r.status == 429 {
            throttled = true;
            break;
        }
        assert_eq!(r.status, 401, "{}", r.body);
    }
    assert!(throttled, "no throttling after 8 wrong passwords");
    let r = intruder.sign_in(USER, PASSWORD);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("wait"), "{}", r.body);
}

#[test]
fn a_whole_differential_over_http_and_bad_input_changes_nothing() {
    let data = scratch("whole");
    add_user(&data, USER, PASSWORD);
    add_user(&data, "ben", PASSWORD);
    let server = Server::start(&data, "127.0.0.1:0", &[]);
    let me = server.signed_in();

    // Bad starts: one clear message each, no journal.
    for (fields, status, says) in [
        (
            vec![("sample", "../x"), ("target", "30")],
            400,
            "not a usable sample ID",
        ),
        (
            vec![("sample", "S1"), ("target", "lots")],
            400,
            "not a usable number",
        ),
        (
            vec![("sample", "S1"), ("target", "0")],
            400,
            "count 1 to 1000",
        ),
        (vec![("target", "30")], 400, "no field &quot;sample&quot;"),
        (
            vec![
                ("sample", "S1"),
                ("target", "30"),
                ("extra", &"y".repeat(20_000)),
            ],
            413,
            "",
        ),
    ] {
        let r = me.post("/count/start", &fields);
        assert_eq!(r.status, status, "{fields:?}: {}", r.body);
        assert!(r.body.contains(says), "{fields:?}: {}", r.body);
    }
    let r = me.post_body("/count/start", "application/json", b"{\"sample\":\"S1\"}");
    assert!(
        (400..500).contains(&r.status),
        "JSON body: {} {}",
        r.status,
        r.body
    );
    assert!(!data.join("counts/S1.journal").exists());

    // Count 30 cells; a second count while it runs is refused.
    let r = me.post("/count/start", &[("sample", "S1"), ("target", "30")]);
    assert_eq!(r.status, 303, "{}", r.body);
    let r = me.post("/count/start", &[("sample", "S2"), ("target", "30")]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.contains("a count of sample S1 is running"),
        "{}",
        r.body
    );
    assert!(!data.join("counts/S2.journal").exists());
    let r = me.post(
        "/counts/S1/review",
        &[("frame", "1"), ("index", "0"), ("verdict", "NEUTROPHIL")],
    );
    assert_eq!(r.status, 409, "review while counting: {}", r.body);
    let r = me.post("/live/focus", &[("steps", "10")]);
    assert!(r.status == 409 || r.status == 303, "{}", r.body);
    let p = me.wait_count(Duration::from_secs(300));
    assert_eq!(p["phase"], "finished", "{p}");
    assert_eq!(p["counted"], 30, "{p}");
    let r = me.post("/count/start", &[("sample", "S1"), ("target", "30")]);
    assert_eq!(r.status, 409, "same sample again: {}", r.body);
    assert!(r.body.contains("already has a count"), "{}", r.body);

    // Review: every unidentified cell is looked at; one cell (unidentified if any) becomes a neutrophil.
    let page = me.get("/counts/S1");
    assert_eq!(page.status, 200);
    let cells = tiles(&page.body);
    assert_eq!(cells.len(), 30, "{cells:?}");
    let csv0 = me.get("/counts/S1/report/csv").body;
    let neutrophils0 = csv_count(&csv0, "NEUTROPHIL");
    let fhir0: Value = serde_json::from_str(&me.get("/counts/S1/report/fhir").body).unwrap();
    assert_eq!(fhir0["status"], "preliminary");
    let (_, f0, i0) = cells
        .iter()
        .find(|(g, ..)| g == "UNIDENTIFIED")
        .or_else(|| cells.iter().find(|(g, ..)| g != "NEUTROPHIL"))
        .cloned()
        .unwrap();
    let (fs, is) = (f0.to_string(), i0.to_string());
    let r = me.post(
        "/counts/S1/review",
        &[("frame", &fs), ("index", &is), ("verdict", "neutrophil")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    for (g, f, i) in &cells {
        if g == "UNIDENTIFIED" && (*f, *i) != (f0, i0) {
            let (fs, is) = (f.to_string(), i.to_string());
            let r = me.post(
                "/counts/S1/review",
                &[("frame", &fs), ("index", &is), ("verdict", "u")],
            );
            assert!(r.status == 400, "'u' is a key, not a verdict: {}", r.body);
            let r = me.post(
                "/counts/S1/review",
                &[("frame", &fs), ("index", &is), ("verdict", "UNIDENTIFIED")],
            );
            assert_eq!(r.status, 303, "{}", r.body);
        }
    }
    // Unknown cells and classes.
    let before = snapshot(&data);
    for (fields, status) in [
        (
            vec![("frame", "9999"), ("index", "0"), ("verdict", "NEUTROPHIL")],
            404,
        ),
        (
            vec![("frame", "1"), ("index", "77"), ("verdict", "NEUTROPHIL")],
            404,
        ),
        (
            vec![
                ("frame", &fs as &str),
                ("index", &is as &str),
                ("verdict", "BAND"),
            ],
            400,
        ),
        (
            vec![("frame", "x"), ("index", "0"), ("verdict", "NEUTROPHIL")],
            400,
        ),
    ] {
        let r = me.post("/counts/S1/review", &fields);
        assert_eq!(r.status, status, "{fields:?}: {}", r.body);
    }
    assert_eq!(me.get("/counts/S1/crop/9999/0").status, 404);
    assert_eq!(me.get("/counts/NOPE").status, 404);
    assert_eq!(me.get("/counts/S1/report/pdf").status, 404);
    assert_eq!(
        snapshot(&data),
        before,
        "a refused review changed the journal"
    );

    // Sign: the report is locked, and says who signed.
    let r = me.post("/counts/S1/sign", &[]);
    assert_eq!(r.status, 303, "{}", r.body);
    let csv1 = me.get("/counts/S1/report/csv").body;
    let fhir1: Value = serde_json::from_str(&me.get("/counts/S1/report/fhir").body).unwrap();
    assert_eq!(csv_count(&csv1, "NEUTROPHIL"), neutrophils0 + 1, "{csv1}");
    assert_eq!(fhir1["status"], "final");
    assert_eq!(fhir1["resultsInterpreter"][0]["display"], USER);
    assert_eq!(fhir1["resourceType"], "DiagnosticReport");
    assert_eq!(fhir1["code"]["coding"][0]["code"], "69738-3");
    let typed = 30
        - csv1
            .lines()
            .filter(|l| l.contains(",UNIDENTIFIED,"))
            .count();
    let want = (1000.0 * (neutrophils0 + 1) as f64 / typed as f64).round() / 10.0;
    assert_eq!(fhir_percent(&fhir1, "26511-6"), want, "{fhir1}");
    assert_ne!(fhir_percent(&fhir0, "26511-6"), want);
    let json = me.report("S1");
    assert_eq!(json["signed"]["by"], USER);
    let before = snapshot(&data);
    let r = me.post(
        "/counts/S1/review",
        &[("frame", &fs), ("index", &is), ("verdict", "LYMPHOCYTE")],
    );
    assert_eq!(r.status, 409, "review after sign-off: {}", r.body);
    assert!(r.body.contains("locked"), "{}", r.body);
    let r = me.post("/counts/S1/sign", &[]);
    assert_eq!(r.status, 409, "signed twice: {}", r.body);
    assert_eq!(snapshot(&data), before);

    // Calibration export of the signed slide: the folder `adapt` takes, and its tar.
    let r = me.post("/calibrate", &[("sample", "S1")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("leukoscope adapt --cells"), "{}", r.body);
    let tar_at = r.body.split("href=\"/calibrate/").nth(1).unwrap();
    let tar_name = tar_at.split('"').next().unwrap();
    let id = tar_name.trim_end_matches(".tar");
    let exported = data.join("calibration").join(id).join("cells/NEUTROPHIL");
    let n = std::fs::read_dir(&exported).unwrap().count();
    assert_eq!(n, neutrophils0 + 1, "{}", exported.display());
    let (status, tar) = me.get_bytes(&format!("/calibrate/{tar_name}"));
    assert_eq!(status, 200);
    let mut ar = tar::Archive::new(&tar[..]);
    let pngs = ar
        .entries()
        .unwrap()
        .filter(|e| {
            let p = e.as_ref().unwrap().path().unwrap().display().to_string();
            p.starts_with("cells/NEUTROPHIL/") && p.ends_with(".png")
        })
        .count();
    assert_eq!(pngs, n);
    let r = me.post("/calibrate", &[("sample", "NOPE")]);
    assert_eq!(r.status, 404, "{}", r.body);

    // An amendment unlocks it; another operator signs again; the report says amended.
    let r = me.post("/counts/S1/amend", &[("reason", "")]);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = me.post("/counts/S1/amend", &[("reason", "cell 3 is a monocyte")]);
    assert_eq!(r.status, 303, "{}", r.body);
    let r = me.post(
        "/counts/S1/review",
        &[("frame", &fs), ("index", &is), ("verdict", "MONOCYTE")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let mut ben = server.client();
    assert_eq!(ben.sign_in("ben", PASSWORD).status, 303);
    assert_eq!(ben.post("/counts/S1/sign", &[]).status, 303);
    let fhir2: Value = serde_json::from_str(&me.get("/counts/S1/report/fhir").body).unwrap();
    assert_eq!(fhir2["status"], "amended");
    assert_eq!(fhir2["resultsInterpreter"][0]["display"], "ben");
    let csv2 = me.get("/counts/S1/report/csv").body;
    assert_eq!(csv_count(&csv2, "NEUTROPHIL"), neutrophils0, "{csv2}");

    // HTML report and the pages render.
    let html = me.get("/counts/S1/report/html");
    assert!(
        html.body.contains("Sample <b>S1</b>") && html.body.contains("signed by ben"),
        "{}",
        html.body
    );
    assert!(me.get("/counts/S1").body.contains("Amended by ana"));
    assert_eq!(me.get("/live.jpg").content_type, "image/jpeg");

    // A journal from another model: the resume is refused, naming both models; nothing written.
    drop(server);
    let other = Server::start(
        &data,
        "127.0.0.1:0",
        &[
            "--model",
            &format!("{}/../models/edge.onnx", env!("CARGO_MANIFEST_DIR")),
        ],
    );
    let me = other.signed_in();
    assert_eq!(
        me.post("/count/start", &[("sample", "P1"), ("target", "30")])
            .status,
        303
    );
    let _ = me.post("/count/pause", &[]);
    let p = me.wait_count(Duration::from_secs(300));
    assert_eq!(p["phase"], "paused", "{p}");
    drop(other);
    {
        let server = Server::start(&data, "127.0.0.1:0", &[]);
        let me = server.signed_in();
        let before = snapshot(&data);
        let r = me.post("/count/resume", &[("sample", "P1")]);
        assert_eq!(r.status, 409, "{}", r.body);
        assert!(r.body.contains("model edge"), "{}", r.body);
        assert_eq!(snapshot(&data), before);
    }
}

#[test]
fn garbage_does_not_stop_the_server() {
    let data = scratch("garbage");
    add_user(&data, USER, PASSWORD);
    let mut server = Server::start(&data, "127.0.0.1:0", &[]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let shapes: [&[u8]; 8] = [
        b"GET /",
        b"POST /count/start HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
        b"\x00\xff\xfe GARBAGE\r\n\r\n",
        b"GET /counts/%2e%2e%2fusers HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /counts/S1/crop/-1/99999999999999999999 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\n%zz=%",
        b"BREW /pot HTTP/1.1\r\n\r\n",
        b"GET /live.mjpeg HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for n in 0..500 {
        let Ok(mut s) = TcpStream::connect(&addr) else {
            panic!("connection {n} refused: {}", server.log());
        };
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut bytes = shapes[(next() % shapes.len() as u64) as usize].to_vec();
        let extra = (next() % 64) as usize;
        bytes.extend((0..extra).map(|_| (next() & 0xff) as u8));
        let _ = s.write_all(&bytes);
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
    }
    assert!(server.alive(), "the server died: {}", server.log());
    let me = server.signed_in();
    assert_eq!(me.get("/").status, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Every counted cell of a report as `(frame, index)`, checking none appears twice.
fn counted_cells(report: &Value) -> BTreeSet<(String, usize)> {
    let mut seen = BTreeSet::new();
    for f in report["frames"].as_array().unwrap() {
        for (i, c) in f["cells"].as_array().unwrap().iter().enumerate() {
            if c["counted"] == true {
                let key = (f["path"].as_str().unwrap().to_string(), i);
                assert!(seen.insert(key.clone()), "{key:?} counted twice");
            }
        }
    }
    seen
}

#[test]
fn kill_9_mid_count_and_mid_review_loses_nothing() {
    let data = scratch("kill");
    add_user(&data, USER, PASSWORD);
    let mut server = Server::start(&data, "127.0.0.1:0", &[]);
    let me = server.signed_in();
    assert_eq!(
        me.post("/count/start", &[("sample", "K1"), ("target", "30")])
            .status,
        303
    );
    let mut seen = 0;
    for _ in 0..600 {
        seen = me.progress()["counted"].as_u64().unwrap();
        if seen >= 8 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen >= 8, "the count did not get going");
    server.kill();

    let server = Server::start(&data, "127.0.0.1:0", &[]);
    let me = server.signed_in();
    let page = me.get("/").body;
    assert!(page.contains("not finished: resume or stop"), "{page}");
    let after = me.report("K1");
    let kept = counted_cells(&after).len() as u64;
    assert!(
        kept >= seen,
        "the page showed {seen} cells, the journal kept {kept}"
    );
    assert_eq!(me.post("/count/resume", &[("sample", "K1")]).status, 303);
    let p = me.wait_count(Duration::from_secs(300));
    assert_eq!(p["phase"], "finished", "{p}");
    let done = me.report("K1");
    let cells = counted_cells(&done);
    assert_eq!(cells.len(), 30, "no cell lost or counted twice");
    let fields: Vec<_> = done["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].clone())
        .collect();
    let unique: BTreeSet<_> = fields.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        unique.len(),
        fields.len(),
        "a field was counted twice: {fields:?}"
    );

    // Mid-review: every review the server answered survives a kill -9 right after the answer.
    let page = me.get("/counts/K1").body;
    let shown = tiles(&page);
    let mut answered = Vec::new();
    let mut server = server;
    for (n, (_, f, i)) in shown.iter().take(6).enumerate() {
        let verdict = if n % 2 == 0 {
            "LYMPHOCYTE"
        } else {
            "NOT_A_WHITE_CELL"
        };
        let r = me.post(
            "/counts/K1/review",
            &[
                ("frame", &f.to_string()),
                ("index", &i.to_string()),
                ("verdict", verdict),
            ],
        );
        assert_eq!(r.status, 303, "{}", r.body);
        answered.push((*f, *i, verdict));
    }
    server.kill();
    let server = Server::start(&data, "127.0.0.1:0", &[]);
    let me = server.signed_in();
    let report = me.report("K1");
    let page = me.get("/counts/K1").body;
    for (f, i, verdict) in answered {
        let found = tiles(&page)
            .into_iter()
            .find(|(_, ff, ii)| (*ff, *ii) == (f, i));
        let (group, ..) = found.unwrap_or_else(|| panic!("cell {i} of frame {f} gone"));
        assert_eq!(group, verdict, "cell {i} of frame {f}");
    }
    // Not-a-white-cell verdicts left the count, so later cells filled it to the target again
    // only if the slide had them: the total never exceeds the target.
    assert!(report["total"].as_u64().unwrap() <= 30);
}
