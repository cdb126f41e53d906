"""The desk's only stylesheet and script, served from the package: nothing is fetched from elsewhere."""

from typing import Final

CSS: Final = """
:root{--bg:#f4f6f9;--card:#fff;--ink:#1d2433;--muted:#667085;--line:#e3e7ee;--accent:#1f5eff;--ok:#117a45;
--ok-bg:#e7f6ee;--bad:#b42318;--bad-bg:#fdecea;--warn:#a15c07;--warn-bg:#fff6e5}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--ink)}
header{display:flex;align-items:center;gap:24px;padding:12px 28px;background:#141b2d;color:#fff;flex-wrap:wrap}
.brand{font-size:17px;letter-spacing:.2px}.brand b{color:#8fb0ff}
nav{display:flex;gap:4px}nav a{color:#d6def0;text-decoration:none;padding:6px 12px;border-radius:6px}
nav a:hover{background:#26304a;color:#fff}
.who{margin-left:auto;display:flex;align-items:center;gap:12px}.who small{color:#9aa6bf}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}h1{font-size:24px;margin:8px 0 16px}
h2{font-size:19px;margin:0}
h3{font-size:13px;text-transform:uppercase;letter-spacing:.6px;color:var(--muted);margin:16px 0 6px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 22px;margin-bottom:18px;
box-shadow:0 1px 2px rgba(16,24,40,.05)}
.card.narrow{max-width:560px}.card.pending{border-left:5px solid var(--accent)}
.card-head{display:flex;justify-content:space-between;align-items:baseline;gap:16px;flex-wrap:wrap}
.card-head small{color:var(--muted);font-weight:400}
.exposure{background:var(--warn-bg);color:var(--warn);padding:4px 10px;border-radius:8px}
.asked{color:var(--muted);margin:6px 0 0}.agent{color:var(--ink);font-weight:600}
.columns{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:0 28px}
dl.grid{display:grid;grid-template-columns:auto 1fr;gap:3px 14px;margin:0}dt{color:var(--muted)}
dd{margin:0;font-variant-numeric:tabular-nums}
.side-buy{color:var(--ok);font-weight:700}.side-sell{color:var(--bad);font-weight:700}
table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:13px}
table.checks tr.pass td:last-child{color:var(--ok);font-weight:600}table.checks tr.fail td{background:var(--bad-bg)}
table.checks tr.fail td:last-child{color:var(--bad);font-weight:700}
table.checks tr.na td:last-child{color:var(--muted)}
.verdict{padding:8px 12px;border-radius:8px;margin:4px 0 8px}.verdict.pass{background:var(--ok-bg);color:var(--ok)}
.verdict.fail{background:var(--bad-bg);color:var(--bad);font-weight:600}
.fingerprint{color:var(--muted);font-size:13px}

.actions{display:flex;gap:18px;flex-wrap:wrap;align-items:center;border-top:1px solid var(--line);
padding-top:14px;margin-top:10px}
.actions form{display:flex;gap:10px;align-items:center}
form.inline{display:inline}
input,select{font:inherit;padding:7px 10px;border:1px solid #cbd2dd;border-radius:8px;background:#fff}
input[name=reason]{min-width:260px}

button,.button{font:inherit;font-weight:600;padding:8px 16px;border-radius:8px;border:1px solid #cbd2dd;background:#fff;
color:var(--ink);cursor:pointer;text-decoration:none;display:inline-block}
button.primary,.button.primary{background:var(--accent);border-color:var(--accent);color:#fff}
button.danger{background:var(--bad);border-color:var(--bad);color:#fff}button.small{padding:3px 10px;font-size:13px}
button.link{background:none;border:none;color:#d6def0;padding:0;font-weight:400;text-decoration:underline}
.pill{padding:3px 10px;border-radius:999px;font-size:13px;font-weight:600}
.pill-ok{background:#1f3d2e;color:#8be0b0}.pill-halt{background:#5c1a14;color:#ffb4ab}
.killswitch.closed{border-left:5px solid var(--bad);background:#fffafa}
.killswitch.open{border-left:5px solid var(--ok)}
.killswitch form{display:flex;gap:10px;margin-top:8px}.halt-text b{color:var(--bad)}
.flash{padding:10px 14px;border-radius:8px;margin-bottom:10px}.flash-ok{background:var(--ok-bg);color:var(--ok)}
.flash-error{background:var(--bad-bg);color:var(--bad)}.flash code{font-weight:700}
.muted{color:var(--muted)}.warn{color:var(--warn)}.summary{color:var(--muted);margin:-8px 0 14px}
.empty{text-align:center;padding:36px}
.status{padding:2px 8px;border-radius:6px;background:#eef1f6;font-size:13px}
.status-approved,.status-consumed,.status-filled{background:var(--ok-bg);color:var(--ok)}
.status-denied,.status-revoked{background:var(--bad-bg);color:var(--bad)}
.status-pending{background:var(--warn-bg);color:var(--warn)}
tr.decision-refuse td,tr.decision-deny td{background:var(--bad-bg)}

.meter{width:220px;height:8px;background:#eef1f6;border-radius:4px;display:inline-block;margin-right:10px;vertical-align:middle}
.meter span{display:block;height:100%;width:var(--fill);background:var(--accent);border-radius:4px}
ul.warnings{margin:4px 0;padding-left:18px;color:var(--warn)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}
"""

JS: Final = """
(function () {
  var body = document.body;
  var stamp = body.getAttribute('data-stamp');
  if (!stamp) { return; }
  var every = Number(body.getAttribute('data-refresh') || '2') * 1000;
  var loadedAt = Date.now();
  var hold = document.querySelector('.flash') ? 8000 : 0; // let the person read the outcome first
  function busy() {
    var el = document.activeElement;
    return el && (el.tagName === 'INPUT' || el.tagName === 'SELECT') && el.value && el.type !== 'hidden';
  }
  function tick() {
    fetch('/changes', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data === null) { return; }
        var held = Date.now() - loadedAt < hold;
        if (data.stamp !== stamp && !busy() && !held) { window.location.reload(); return; }
        window.setTimeout(tick, every);
      })
      .catch(function () { window.setTimeout(tick, every * 2); });
  }
  window.setTimeout(tick, every);
})();
"""
