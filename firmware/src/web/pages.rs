//! The pages, rendered on the device: plain HTML forms (each with the session's CSRF token), a little
//! inline script (progress polling, the review's keyboard) and nothing fetched from anywhere else.

use super::app::{counted, status_of, App, Phase, Progress, MAX_TARGET};
use super::auth::Session;
use crate::classes::{NOT_WHITE_CELL, UNIDENTIFIED};
use crate::count::reference_range;
use crate::journal::State;
use crate::report::html::escape;
use crate::report::{iso_date, Report};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
header{background:#234;color:#fff;padding:.5em 1em;display:flex;gap:1.5em;align-items:center}\
header a{color:#fff}header form{margin-left:auto}main{padding:1em}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}.msg{background:#ffd;border:1px solid #cc8;padding:.5em}\
.err{background:#fee;border:1px solid #c88;padding:.5em}.flag{color:#b00;font-weight:bold}\
.cells{display:flex;flex-wrap:wrap;gap:4px}.cell{margin:0;border:3px solid transparent;cursor:pointer;\
text-align:center;font-size:11px;width:104px}.cell img{width:96px;height:96px;image-rendering:pixelated}\
.cell.sel{border-color:#06c}.cell.rev{background:#eef}#bar{position:sticky;top:0;background:#fff;\
padding:.5em 0;border-bottom:1px solid #ccc}button{margin:2px}form.inline{display:inline}";

/// One page: the navigation (with the operator and sign-out when signed in), then `body`.
pub fn layout(title: &str, session: Option<&Session>, body: &str) -> String {
    let who = match session {
        Some(s) => format!(
            "<form method=\"post\" action=\"/signout\"><span>{}</span> {}<button>Sign out</button></form>",
            escape(&s.user),
            csrf(s)
        ),
        None => "<a href=\"/signin\" style=\"margin-left:auto\">Sign in</a>".into(),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{} – Leukoscope</title>\
         <style>{STYLE}</style></head><body>\n<header><b>Leukoscope</b><a href=\"/\">Count</a>\
         <a href=\"/live\">Live</a><a href=\"/calibrate\">Calibrate</a>{who}</header>\n<main>\n{body}\n</main></body></html>\n",
        escape(title)
    )
}

/// The hidden CSRF field of a session's forms.
pub fn csrf(s: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&s.csrf)
    )
}

/// A message box (`error`: red).
pub fn note(message: Option<&str>, error: bool) -> String {
    message.map_or(String::new(), |m| {
        format!(
            "<p class=\"{}\" id=\"note\">{}</p>\n",
            if error { "err" } else { "msg" },
            escape(m)
        )
    })
}

/// A refusal as a page.
pub fn error(message: &str, session: Option<&Session>) -> String {
    layout(
        "Not done",
        session,
        &format!(
            "{}<p><a href=\"javascript:history.back()\">Back</a> · <a href=\"/\">Count page</a></p>",
            note(Some(message), true)
        ),
    )
}

/// The sign-in page (`pre`: the sign-in form's own CSRF token, also in its cookie).
pub fn signin(pre: &str, message: Option<&str>) -> String {
    layout(
        "Sign in",
        None,
        &format!(
            "<h1>Sign in</h1>{}<form method=\"post\" action=\"/signin\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <p><label>Operator <input name=\"user\" id=\"user\" autocomplete=\"username\" required></label></p>\
             <p><label>Password <input type=\"password\" name=\"password\" id=\"password\" \
             autocomplete=\"current-password\" required></label></p><p><button id=\"signin\">Sign in</button></p></form>\
             <p><small>Operators are added on the device: <code>leukoscope user add NAME --data DIR</code>.</small></p>",
            note(message, true),
            escape(pre)
        ),
    )
}

fn progress_html(p: &Progress) -> String {
    let phase = match p.phase {
        Phase::Running => "counting",
        Phase::Stopping => "stopping",
        Phase::Paused => "paused",
        Phase::Finished => "finished",
        Phase::Exhausted => "slide exhausted",
        Phase::Failed => "failed",
    };
    let target = if p.target > 0 {
        format!("{} / {}", p.counted, p.target)
    } else {
        format!("{} (no target)", p.counted)
    };
    let mut rows = String::new();
    if let serde_json::Value::Object(m) = &p.differential {
        for (name, n) in m {
            let pct = p
                .percent
                .iter()
                .find(|(c, _)| c == name)
                .map_or(String::new(), |(_, v)| format!("{v:.1} %"));
            rows += &format!(
                "<tr><td>{}</td><td>{n}</td><td>{pct}</td></tr>",
                escape(name)
            );
        }
    }
    let eta = p.eta_s.map_or(String::new(), |s| {
        format!(", about {} min {} s left", s / 60, s % 60)
    });
    format!(
        "<p>Sample <b>{}</b>: <b id=\"phase\">{phase}</b> · cells <b id=\"counted\">{target}</b> · field {} · \
         {:.0} cells/min{eta}</p>{}<table id=\"running\"><tr><th>class</th><th>cells</th><th>%</th></tr>{rows}</table>",
        escape(&p.sample),
        p.field.map_or("–".into(), |f| f.to_string()),
        p.rate_per_min,
        note(p.message.as_deref(), matches!(p.phase, Phase::Failed)),
    )
}

/// The progress block alone (the count page polls it).
pub fn progress_fragment(app: &App) -> String {
    app.progress()
        .map_or("<p>No count since the device started.</p>".into(), |p| {
            progress_html(&p)
        })
}

/// The count page: start a count, its progress, the samples on the device.
pub fn index(app: &App, s: Option<&Session>, message: Option<&str>) -> String {
    let running = app
        .progress()
        .is_some_and(|p| matches!(p.phase, Phase::Running | Phase::Stopping));
    let mut b = String::from("<h1>Count</h1>\n");
    b += &note(message, false);
    let c = s.map(csrf).unwrap_or_default();
    if !running {
        b += &format!(
            "<form method=\"post\" action=\"/count/start\">{c}\
             <label>Sample ID <input name=\"sample\" id=\"sample\" required maxlength=\"64\" \
             pattern=\"[A-Za-z0-9_\\-][A-Za-z0-9._\\-]*\"></label> \
             <label>Cells <input type=\"number\" name=\"target\" id=\"target\" value=\"100\" min=\"1\" max=\"{MAX_TARGET}\" \
             list=\"targets\"></label><datalist id=\"targets\"><option value=\"100\"><option value=\"200\"></datalist> \
             <button id=\"start\">Start count</button></form>\n"
        );
    } else {
        b += &format!(
            "<form method=\"post\" action=\"/count/pause\" class=\"inline\">{c}<button id=\"pause\">Pause</button></form>\
             <form method=\"post\" action=\"/count/stop\" class=\"inline\">{c}<button id=\"stop\">Stop (finish as it is)</button></form>\n"
        );
    }
    b += &format!(
        "<h2>Progress</h2><div id=\"progress\">{}</div>\n",
        progress_fragment(app)
    );
    b += "<h2>Samples</h2><table id=\"samples\"><tr><th>sample</th><th>cells</th><th>status</th><th></th></tr>\n";
    for sample in app.store.samples().into_iter().take(200) {
        let e = escape(&sample);
        let (cells, status, actions) = match app.store.state(&sample) {
            Ok(st) => {
                let counting = app.counting(&sample);
                let mut a = format!("<a href=\"/counts/{e}\">review</a>");
                if !counting && !st.finished && st.signed().is_none() {
                    a += &format!(
                        " <form method=\"post\" action=\"/count/resume\" class=\"inline\">{c}\
                         <input type=\"hidden\" name=\"sample\" value=\"{e}\"><button>Resume</button></form>\
                         <form method=\"post\" action=\"/count/stop\" class=\"inline\">{c}\
                         <input type=\"hidden\" name=\"sample\" value=\"{e}\"><button>Finish as it is</button></form>"
                    );
                }
                let status = if counting {
                    "counting".to_string()
                } else {
                    status_of(&st)
                };
                (format!("{} / {}", st.counted(), st.target()), status, a)
            }
            Err(err) => (String::new(), format!("unreadable: {err}"), String::new()),
        };
        b += &format!(
            "<tr><td>{e}</td><td>{cells}</td><td>{}</td><td>{actions}</td></tr>\n",
            escape(&status)
        );
    }
    b += "</table>\n<script>\
          (function(){const p=document.getElementById('progress');let was=null;\
          async function tick(){try{const r=await fetch('/progress',{credentials:'same-origin'});\
          if(r.ok){const t=await r.text();p.innerHTML=t;const ph=document.getElementById('phase');\
          const now=ph?ph.textContent:null;if(was!==null&&now!==was&&(was==='counting'||was==='stopping'))\
          {location.reload();return;}was=now;}}catch(e){}setTimeout(tick,1000);}tick();})();</script>";
    layout("Count", s, &b)
}

/// The live page: the camera stream, focus, light and stage.
pub fn live(app: &App, s: Option<&Session>, message: Option<&str>) -> String {
    let c = s.map(csrf).unwrap_or_default();
    let state = app.device_state();
    let desc = match &state {
        Some(d) => format!(
            "focus {} (limits {}..{}) · light {} ‰ · stage {}",
            d.focus,
            d.focus_limits.0,
            d.focus_limits.1,
            d.light,
            d.stage
                .map_or("moved by hand".into(), |(x, y)| format!("at ({x}, {y})"))
        ),
        None => "a count is using the microscope: the view shows its frames".into(),
    };
    let mut b = format!(
        "<h1>Live</h1>{}<p id=\"state\">{}</p>\
         <p><img id=\"stream\" src=\"/live.mjpeg\" alt=\"camera\" style=\"max-width:100%;width:640px\"></p>\n",
        note(message, false),
        escape(&desc)
    );
    let button = |action: &str, fields: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"/live/{action}\" class=\"inline\">{c}{fields}<button>{label}</button></form>"
        )
    };
    b += "<p>Focus: ";
    for steps in [-50, -10, -1, 1, 10, 50] {
        b += &button(
            "focus",
            &format!("<input type=\"hidden\" name=\"steps\" value=\"{steps}\">"),
            &format!("{steps:+}"),
        );
    }
    b += &button("autofocus", "", "Autofocus");
    b += "</p><p>";
    b += &format!(
        "<form method=\"post\" action=\"/live/light\" class=\"inline\">{c}<label>Light (‰) \
         <input type=\"number\" name=\"permille\" min=\"0\" max=\"1000\" value=\"{}\"></label><button>Set</button></form>",
        state.as_ref().map_or(0, |d| d.light)
    );
    b += "</p><p>Stage: ";
    for (label, dx, dy) in [
        ("←", -1000, 0),
        ("→", 1000, 0),
        ("↑", 0, -1000),
        ("↓", 0, 1000),
    ] {
        b += &button(
            "stage",
            &format!(
                "<input type=\"hidden\" name=\"dx\" value=\"{dx}\"><input type=\"hidden\" name=\"dy\" value=\"{dy}\">"
            ),
            label,
        );
    }
    b += "</p>";
    layout("Live", s, &b)
}

/// The review page of one sample: differential, flags, galleries (unidentified first), sign-off.
pub fn review(
    sample: &str,
    st: &State,
    counting: bool,
    s: Option<&Session>,
    message: Option<&str>,
) -> String {
    let report = Report::from_journal(st);
    let classes = report.classes().clone();
    let d = &report.differential;
    let pct = d.percentages();
    let flags = report.flags();
    let e = escape(sample);
    let c = s.map(csrf).unwrap_or_default();
    let mut b = format!(
        "<h1>Sample {e}</h1>{}<p id=\"status\">{}{}</p><p>{}.</p>\n",
        note(message, false),
        escape(&status_of(st)),
        if counting { " · counting now" } else { "" },
        escape(&report.headline())
    );
    b += "<table id=\"differential\"><tr><th>class</th><th>cells</th><th>% of identified</th><th>adult %</th><th>flag</th></tr>\n";
    for (i, name) in classes.iter().enumerate() {
        let flag = flags
            .iter()
            .find(|f| f.class == name)
            .map_or(String::new(), |f| {
                format!("{:?}", f.direction).to_uppercase()
            });
        let range =
            reference_range(name).map_or(String::new(), |r| format!("{}–{}", r.low, r.high));
        b += &format!(
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{range}</td><td class=\"flag\">{flag}</td></tr>\n",
            escape(name),
            d.count(Some(i)),
            pct[i]
        );
    }
    b += &format!(
        "<tr><td>{UNIDENTIFIED}</td><td id=\"unidentified\">{}</td><td></td><td></td><td></td></tr></table>\n",
        d.unidentified()
    );
    b += &format!(
        "<p>Reports: <a href=\"/counts/{e}/report/html\">HTML</a> · <a href=\"/counts/{e}/report/csv\" id=\"csv\">CSV</a> · \
         <a href=\"/counts/{e}/report/json\">JSON</a> · <a href=\"/counts/{e}/report/fhir\" id=\"fhir\">FHIR</a></p>\n"
    );
    let locked = st.signed().is_some();
    if locked {
        let so = st
            .signed()
            .map(|x| (x.by.clone(), x.unix))
            .unwrap_or_default();
        b += &format!(
            "<p>Signed by <b>{}</b> on {}: locked.</p><form method=\"post\" action=\"/counts/{e}/amend\">{c}\
             <label>Amend (unlocks it; say why) <input name=\"reason\" required maxlength=\"500\" size=\"40\"></label> \
             <button>Amend</button></form>\n",
            escape(&so.0),
            iso_date(so.1)
        );
    } else if st.finished && !counting {
        b += &format!(
            "<form method=\"post\" action=\"/counts/{e}/sign\">{c}<button id=\"sign\">Sign as {}</button></form>\n",
            escape(s.map_or("", |s| s.user.as_str()))
        );
    }
    for a in &st.amendments {
        b += &format!(
            "<p><small>Amended by {} on {}: {}</small></p>\n",
            escape(&a.by),
            iso_date(a.unix),
            escape(&a.reason)
        );
    }
    // The toolbar: select a cell (click, or arrows), then a class (click, or its key).
    if !locked && !counting {
        b += &format!(
            "<form method=\"post\" action=\"/counts/{e}/review\" id=\"bar\">{c}\
             <input type=\"hidden\" name=\"frame\" id=\"f\"><input type=\"hidden\" name=\"index\" id=\"i\">\
             Selected: <b id=\"which\">none (click a cell)</b> → "
        );
        for (k, name) in classes.iter().enumerate() {
            b += &format!(
                "<button name=\"verdict\" value=\"{0}\" data-key=\"{1}\" id=\"v-{0}\">{1} {0}</button>",
                escape(name),
                k + 1
            );
        }
        b += &format!(
            "<button name=\"verdict\" value=\"{UNIDENTIFIED}\" data-key=\"u\" id=\"v-{UNIDENTIFIED}\">u unidentified</button>\
             <button name=\"verdict\" value=\"{NOT_WHITE_CELL}\" data-key=\"x\" id=\"v-{NOT_WHITE_CELL}\">x not a white cell</button></form>\n"
        );
    }
    let cells = counted(st, &report);
    let groups = std::iter::once((UNIDENTIFIED.to_string(), None)).chain(
        classes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), Some(i))),
    );
    for (name, class) in groups {
        let in_group: Vec<_> = cells
            .iter()
            .filter(|x| x.cell.is_white_cell() && x.cell.class() == class)
            .collect();
        b += &format!(
            "<h2>{} ({})</h2><div class=\"cells\" id=\"g-{}\">",
            escape(&name),
            in_group.len(),
            escape(&name)
        );
        for x in in_group {
            b += &tile(sample, x.frame, x.index, x.cell, &classes);
        }
        b += "</div>\n";
    }
    let out: Vec<_> = cells.iter().filter(|x| !x.cell.is_white_cell()).collect();
    if !out.is_empty() {
        b += &format!(
            "<h2>Not white cells ({}), not counted</h2><div class=\"cells\">",
            out.len()
        );
        for x in out {
            b += &tile(sample, x.frame, x.index, x.cell, &classes);
        }
        b += "</div>\n";
    }
    b += REVIEW_SCRIPT;
    layout(&format!("Sample {sample}"), s, &b)
}

fn tile(
    sample: &str,
    frame: u64,
    index: u32,
    cell: &crate::cell::Cell,
    classes: &crate::classes::Classes,
) -> String {
    let p = cell.prediction.as_ref();
    let said = p.map_or("not typed".into(), |p| {
        format!("{} {:.2}", classes.label(Some(p.predicted)), p.confidence)
    });
    let rev = cell.review.as_ref().map_or(String::new(), |r| {
        format!("<br>reviewed by {}", escape(&r.by))
    });
    format!(
        "<figure class=\"cell{}\" tabindex=\"0\" id=\"c-{frame}-{index}\" data-frame=\"{frame}\" data-index=\"{index}\">\
         <img loading=\"lazy\" alt=\"cell {index} of frame {frame}\" src=\"/counts/{}/crop/{frame}/{index}\">\
         <figcaption>{}{rev}</figcaption></figure>",
        if cell.review.is_some() { " rev" } else { "" },
        escape(sample),
        escape(&said)
    )
}

const REVIEW_SCRIPT: &str = "<script>(function(){\
const bar=document.getElementById('bar');if(!bar)return;\
const tiles=[...document.querySelectorAll('.cell')];let sel=null;\
function pick(t){if(sel)sel.classList.remove('sel');sel=t;t.classList.add('sel');t.focus();\
document.getElementById('f').value=t.dataset.frame;document.getElementById('i').value=t.dataset.index;\
document.getElementById('which').textContent='cell '+t.dataset.index+' of frame '+t.dataset.frame;\
sessionStorage.setItem('lk-sel',t.id);}\
tiles.forEach(t=>t.addEventListener('click',()=>pick(t)));\
const keep=sessionStorage.getItem('lk-sel');const back=keep&&document.getElementById(keep);\
if(back)pick(back);else if(tiles.length)pick(tiles[0]);\
bar.addEventListener('submit',e=>{if(!sel){e.preventDefault();}});\
document.addEventListener('keydown',e=>{if(e.target.tagName==='INPUT'||e.ctrlKey||e.metaKey||e.altKey)return;\
const k=e.key.toLowerCase();\
if(k==='arrowright'||k==='arrowleft'){const i=tiles.indexOf(sel)+(k==='arrowright'?1:-1);\
if(tiles[i]){pick(tiles[i]);e.preventDefault();}return;}\
const b=bar.querySelector('button[data-key=\"'+k+'\"]');if(b&&sel){e.preventDefault();bar.requestSubmit(b);}});\
})();</script>";

/// The calibration page: signed samples to export as `cells/<CLASS>/*.png` for `leukoscope adapt`.
pub fn calibrate(app: &App, s: Option<&Session>, message: Option<&str>) -> String {
    let c = s.map(csrf).unwrap_or_default();
    let mut b = format!(
        "<h1>Calibrate</h1>{}<p>Export the reviewed cells of signed counts as the folder \
         <code>leukoscope adapt --cells</code> takes (one subfolder per class), to fit this microscope's model \
         to this lab.</p><form method=\"post\" action=\"/calibrate\">{c}<table><tr><th></th><th>sample</th><th>cells</th><th>status</th></tr>\n",
        note(message, false)
    );
    let mut any = false;
    for sample in app.store.samples() {
        let Ok(st) = app.store.state(&sample) else {
            continue;
        };
        if st.signed().is_none() {
            continue;
        }
        any = true;
        let e = escape(&sample);
        b += &format!(
            "<tr><td><input type=\"checkbox\" name=\"sample\" value=\"{e}\" checked></td><td>{e}</td><td>{}</td><td>{}</td></tr>\n",
            st.counted(),
            escape(&status_of(&st))
        );
    }
    b += "</table>";
    b += if any {
        "<p><button id=\"export\">Export</button></p></form>"
    } else {
        "<p>No signed count yet.</p></form>"
    };
    layout("Calibrate", s, &b)
}

/// The page after an export: where it is, its download, the command.
pub fn exported(app: &App, s: Option<&Session>, id: &str, per_class: &[(String, usize)]) -> String {
    let dir = app.calibration_dir(id).join("cells");
    let rows: String = per_class
        .iter()
        .map(|(n, k)| format!("<tr><td>{}</td><td>{k}</td></tr>", escape(n)))
        .collect();
    let few = per_class.iter().any(|(_, k)| *k < 3);
    layout(
        "Calibration export",
        s,
        &format!(
            "<h1>Calibration export {id}</h1><table><tr><th>class</th><th>cells</th></tr>{rows}</table>\
             {}<p><a href=\"/calibrate/{id}.tar\" id=\"tar\">Download cells.tar</a></p>\
             <p>On the device: <code>leukoscope adapt --cells {} --out site.onnx</code>, then count with \
             <code>--model site.onnx</code>.</p>",
            if few {
                note(Some("adapt needs at least 3 cells of every class: add more signed counts"), true)
            } else {
                String::new()
            },
            escape(&dir.display().to_string())
        ),
    )
}
