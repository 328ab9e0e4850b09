"use strict";
// The page: send each chosen image to POST /anonymize (response=json), show before and after,
// the regions found and the verdict, and offer the result for download. No external resources.
(function () {
  const form = document.getElementById("form");
  const input = document.getElementById("files");
  const drop = document.getElementById("drop");
  const go = document.getElementById("go");
  const status = document.getElementById("status");
  const results = document.getElementById("results");
  const template = document.getElementById("result");
  let chosen = [];

  function choose(files) {
    chosen = Array.from(files || []);
    go.disabled = chosen.length === 0;
    status.textContent = chosen.length ? chosen.length + " image(s) chosen" : "";
  }
  input.addEventListener("change", () => choose(input.files));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => choose(e.dataTransfer.files));

  fetch("/options").then((r) => r.json()).then((opts) => {
    const select = document.getElementById("operator");
    const known = new Set(opts.operators || []);
    Array.from(select.options).forEach((o) => { if (!known.has(o.value)) o.remove(); });
    (opts.operators || []).forEach((name) => {
      if (!Array.from(select.options).some((o) => o.value === name)) select.add(new Option(name, name));
    });
  }).catch(() => {});

  function drawBoxes(img, canvas, regions) {
    const w = img.naturalWidth, h = img.naturalHeight;
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.lineWidth = Math.max(2, Math.round(Math.min(w, h) / 200));
    ctx.strokeStyle = "#ff2d55";
    regions.forEach((r) => { const [x1, y1, x2, y2] = r.box; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1); });
  }

  function verdictText(body) {
    if (body.verdict === "passed") return ["passed the release check: no face the detectors found is re-identified or still detected, and no text found is readable. The detectors can miss things: look before you publish", "passed"];
    if (body.verdict === "text-readable") return ["text is still readable (a name tag or a sign can identify a person): look at it, or anonymize text too (scope face,text)", "review"];
    if (body.verdict === "person-without-face") return ["a person with no face found (a back turned, a face hidden or missed): look at it before you publish it, or anonymize whole people (scope person)", "review"];
    if (body.verdict === "nothing-found") return ["nothing found: no face was detected, so nothing was changed. Look at it before you publish it", "review"];
    if (body.verdict === "not-checked") return ["not checked", "review"];
    return [body.verdict, "failed"];
  }

  async function one(file) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.querySelector(".name").textContent = file.name;
    const verdict = card.querySelector(".verdict");
    const before = card.querySelector(".before");
    const after = card.querySelector(".after");
    const link = card.querySelector(".download");
    link.hidden = true;
    verdict.textContent = "working...";
    before.src = URL.createObjectURL(file);
    results.prepend(card);
    const data = new FormData();
    data.append("file", file);
    data.append("scope", document.getElementById("scope").value);
    data.append("operator", document.getElementById("operator").value);
    data.append("response", "json");
    let res, body;
    try {
      res = await fetch("/anonymize", { method: "POST", body: data, cache: "no-store" });
      body = await res.json();
    } catch (err) {
      verdict.textContent = "failed: the server did not answer";
      verdict.className = "verdict failed";
      return;
    }
    const problems = card.querySelector(".problems");
    if (!res.ok) {
      verdict.textContent = (body.verdict ? body.verdict + ": " : "error: ") + (body.error || res.status);
      verdict.className = "verdict failed";
      (body.problems || []).forEach((p) => { const li = document.createElement("li"); li.textContent = p; problems.appendChild(li); });
      after.remove();
      return;
    }
    const [text, cls] = verdictText(body);
    verdict.textContent = text + " (" + body.regions.length + " region(s) anonymized)";
    verdict.className = "verdict " + cls;
    (body.problems || []).forEach((p) => { const li = document.createElement("li"); li.textContent = p; problems.appendChild(li); });
    const bytes = Uint8Array.from(atob(body.image.base64), (c) => c.charCodeAt(0));
    const blob = new Blob([bytes], { type: body.image.media_type });
    const url = URL.createObjectURL(blob);
    after.src = url;
    link.href = url;
    const stem = file.name.replace(/\.[^.]*$/, "");
    link.download = stem + "-anonymized." + body.image.filename.split(".").pop();
    link.hidden = false;
    const canvas = card.querySelector(".boxes");
    const draw = () => drawBoxes(before, canvas, body.regions);
    if (before.complete && before.naturalWidth) draw(); else before.addEventListener("load", draw, { once: true });
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    go.disabled = true;
    for (let i = 0; i < chosen.length; i++) {
      status.textContent = "anonymizing " + (i + 1) + " of " + chosen.length + "...";
      await one(chosen[i]);
    }
    status.textContent = "done: " + chosen.length + " image(s)";
    go.disabled = false;
  });
})();
