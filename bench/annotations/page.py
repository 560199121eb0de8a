"""The annotation page: one self-contained HTML file (no outside scripts, styles or fonts), served by `server`."""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>bench annotate</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
  header { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
  #progress { font-weight: 600; }
  #bar { width: 240px; height: 10px; background: #ddd; border-radius: 5px; overflow: hidden; }
  #bar > div { height: 100%; background: #2a7; width: 0; }
  figure { display: inline-block; margin: 1rem 1rem 0 0; text-align: center; }
  figure img { width: 256px; height: 256px; image-rendering: pixelated; border: 1px solid #999; }
  #question { font-size: 1.2rem; margin-top: 1rem; }
  button { font-size: 1rem; padding: .5rem 1rem; margin: .5rem .5rem 0 0; }
  kbd { border: 1px solid #aaa; border-radius: 3px; padding: 0 .3rem; }
  #status { color: #666; min-height: 1.2rem; }
  .error { color: #b00 !important; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<header>
  <label>Annotator id <input id="annotator" autocomplete="off" size="24" placeholder="e.g. ann-01"></label>
  <button id="start">Start</button>
  <span id="progress">–</span>
  <div id="bar"><div></div></div>
  <a id="export" href="#">Export CSV</a>
</header>
<main id="task" hidden>
  <div id="question"></div>
  <div id="images"></div>
  <div id="answers"></div>
  <p>Keys: <span id="keys"></span></p>
</main>
<p id="finished" hidden>All items are answered. Thank you. (Export the answers with the link above.)</p>
<p id="status"></p>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
let annotator = "", item = null, busy = false;

function withToken(path) { return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token); }
function status(text, error) { $("status").textContent = text; $("status").className = error ? "error" : ""; }

async function call(path, body) {
  const opts = body ? {method: "POST", headers: {"Content-Type": "application/json", "X-Bench-Token": token},
                       body: JSON.stringify(body)}
                    : {headers: {"X-Bench-Token": token}};
  const res = await fetch(path, opts);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function show(state) {
  $("progress").textContent = state.done + " / " + state.total + " answered";
  $("progress").dataset.done = state.done;
  $("progress").dataset.total = state.total;
  $("bar").firstElementChild.style.width = (state.total ? 100 * state.done / state.total : 0) + "%";
  item = state.item;
  $("task").hidden = !item;
  $("finished").hidden = !!item;
  if (!item) { $("task").dataset.key = ""; return; }
  $("task").dataset.key = item.key;
  $("question").textContent = item.question;
  const figs = [["original", item.original]];
  if (item.kind === "pair") { figs.push(["left", item.reconstructions[0]], ["right", item.reconstructions[1]]); }
  else { figs.push(["reconstruction", item.reconstructions[0]]); }
  $("images").replaceChildren(...figs.map(([name, src]) => {
    const f = document.createElement("figure");
    const img = document.createElement("img");
    img.src = withToken(src); img.alt = name; img.id = "img-" + name;
    const c = document.createElement("figcaption"); c.textContent = name;
    f.append(img, c); return f;
  }));
  const choices = item.kind === "pair"
    ? [["left", "Left is closer", "← or 1"], ["right", "Right is closer", "→ or 2"]]
    : [["yes", "Yes, recognisable", "Y"], ["no", "No", "N"]];
  $("answers").replaceChildren(...choices.map(([value, label, key]) => {
    const b = document.createElement("button");
    b.id = "answer-" + value; b.textContent = label + " (" + key + ")";
    b.addEventListener("click", () => answer(value));
    return b;
  }));
  $("keys").textContent = choices.map(c => c[2] + ": " + c[1]).join(" · ");
}

async function load() {
  annotator = $("annotator").value.trim();
  if (!annotator) { status("enter an annotator id first", true); return; }
  localStorage.setItem("bench-annotator", annotator);
  try { show(await call("/api/state?annotator=" + encodeURIComponent(annotator))); status("ready"); }
  catch (e) { status(e.message, true); }
}

async function answer(value) {
  if (!item || busy) return;
  busy = true;
  try {
    const state = await call("/api/answer", {annotator: annotator, key: item.key, answer: value});
    status("saved: " + value);
    show(state);
  } catch (e) { status("not saved: " + e.message, true); }
  finally { busy = false; }
}

document.addEventListener("keydown", (ev) => {
  if (ev.target === $("annotator")) { if (ev.key === "Enter") load(); return; }
  if (!item) return;
  const k = ev.key.toLowerCase();
  const map = item.kind === "pair" ? {"arrowleft": "left", "1": "left", "arrowright": "right", "2": "right"}
                                   : {"y": "yes", "n": "no"};
  if (map[k]) { ev.preventDefault(); answer(map[k]); }
});
$("start").addEventListener("click", load);
$("export").href = withToken("/api/export.csv");
$("export").setAttribute("download", "annotations.csv");
const given = new URLSearchParams(location.search).get("annotator") || localStorage.getItem("bench-annotator");
if (given) { $("annotator").value = given; load(); }
</script>
</body>
</html>
"""
