/**
 * The chat view: `say {text}` → everyone gets `said {player_id, text}`;
 * `player_joined` / `player_left` as people come and go.
 */

/**
 * @param {HTMLElement} root where to draw
 * @param {import("./gameframe.js").Client} client
 * @returns {() => void} unmount
 */
export function mount(root, client) {
  root.innerHTML = `
    <div id="chat">
      <ol id="chat-log" aria-live="polite"></ol>
      <form id="chat-form" autocomplete="off">
        <input id="chat-input" name="text" maxlength="1000" placeholder="Say something…" required>
        <button type="submit">Send</button>
      </form>
    </div>`;
  const log = root.querySelector("#chat-log");
  const form = root.querySelector("#chat-form");
  const input = root.querySelector("#chat-input");
  const name = (id) => (id === client.playerId ? "you" : id);

  function line(kind, playerId, text) {
    const item = document.createElement("li");
    item.className = kind;
    item.dataset.playerId = playerId ?? "";
    if (kind === "said") {
      const who = document.createElement("b");
      who.textContent = name(playerId);
      item.append(who, ": ");
    }
    item.append(text);
    log.append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  const others = client.players.filter((id) => id !== client.playerId);
  line("system", null, others.length ? `Here: ${others.join(", ")}.` : "Nobody else is here yet.");

  const unsubscribe = [
    client.on("said", (m) => line("said", m.player_id, m.text)),
    client.on("player_joined", (m) => {
      if (m.player_id !== client.playerId) line("system", m.player_id, `${m.player_id} joined.`);
    }),
    client.on("player_left", (m) => line("system", m.player_id, `${m.player_id} left.`)),
  ];

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    client.request("say", { text }).catch((error) => line("error", null, error.message));
  });
  input.focus();

  return () => unsubscribe.forEach((off) => off());
}
