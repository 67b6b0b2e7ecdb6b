// The room page: join (camera + microphone -> WHIP) or watch; a per-speaker emotion timeline from SSE.
// The token comes from the page URL (?token=...): a publish token lets you join, a subscribe token watch.
"use strict";
const room = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const watchToken = params.get("watch") || token;
const $ = (id) => document.getElementById(id);
$("room").textContent = room;
let pc = null;
let session = null;

function status(text) { $("status").textContent = text; }

function speakerBox(name) {
  const id = "speaker-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
  let box = document.getElementById(id);
  if (!box) {
    box = document.createElement("div");
    box.className = "speaker";
    box.id = id;
    box.dataset.speaker = name;
    box.innerHTML = "<h2></h2><div class='timeline'></div>";
    box.querySelector("h2").textContent = name;
    $("speakers").appendChild(box);
  }
  return box.querySelector(".timeline");
}

function addEvent(ev) {
  const row = document.createElement("div");
  row.className = "event";
  row.dataset.speaker = ev.speaker;
  row.dataset.label = ev.label;
  row.dataset.driver = ev.driver || "text";  // emostream.late_fusion.driver_of, set by the fusion stage
  const t = new Date((ev.emitted_at || ev.end) * 1000);
  row.innerHTML =
    "<span class='time'></span><span class='label'></span><span class='driver'></span><span class='transcript'></span>";
  row.querySelector(".time").textContent = t.toLocaleTimeString();
  const label = row.querySelector(".label");
  label.textContent = ev.label + " " + Math.round(100 * ev.confidence) + "%";
  label.classList.add(ev.label);
  const driver = row.querySelector(".driver");
  driver.textContent = "by " + row.dataset.driver;
  driver.title = "which modality drove this decision (text, face, both, fused)";
  row.querySelector(".transcript").textContent = ev.transcript || "";
  speakerBox(ev.speaker).prepend(row);
}

function watch() {
  const url = "/v1/rooms/" + encodeURIComponent(room) + "/events?token=" + encodeURIComponent(watchToken);
  const source = new EventSource(url);
  source.addEventListener("emotion", (msg) => addEvent(JSON.parse(msg.data)));
  source.addEventListener("ready", () => status(session ? "live" : "watching"));
  source.onerror = () => status("reconnecting to events...");
}

async function join() {
  $("join").disabled = true;
  try {
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    $("self").srcObject = media;
    $("self").hidden = false;
    pc = new RTCPeerConnection();
    for (const track of media.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((done) => {  // WHIP without trickle: send the offer with every candidate
      if (pc.iceGatheringState === "complete") return done();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
      setTimeout(done, 3000);
    });
    const resp = await fetch("/whip/" + encodeURIComponent(room), {
      method: "POST",
      headers: { "Content-Type": "application/sdp", "Authorization": "Bearer " + token },
      body: pc.localDescription.sdp,
    });
    if (resp.status !== 201) {
      let reason = resp.statusText;
      try { reason = (await resp.json()).error; } catch (e) { /* not JSON */ }
      throw new Error(reason);
    }
    session = resp.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
    $("join").hidden = true;
    $("leave").hidden = false;
    status("live: you are being analyzed");
  } catch (err) {
    status("could not join: " + err.message);
    $("join").disabled = false;
    if (pc) pc.close();
  }
}

async function leave() {
  if (session) {
    await fetch(session, { method: "DELETE", headers: { "Authorization": "Bearer " + token } });
  }
  session = null;
  if (pc) pc.close();
  const media = $("self").srcObject;
  if (media) media.getTracks().forEach((t) => t.stop());
  $("self").hidden = true;
  $("leave").hidden = true;
  $("join").hidden = false;
  $("join").disabled = false;
  status("watching");
}

$("join").addEventListener("click", join);
$("leave").addEventListener("click", leave);
window.emostream = { join, leave };  // for automation (headless browser tests)
watch();
if (params.get("join") === "1") join();
