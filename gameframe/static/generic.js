/**
 * The view for room types the demo does not know (served with --room):
 * the mirrored state, the messages received, and a form to send an action.
 */

/**
 * @param {HTMLElement} root where to draw
 * @param {import("./gameframe.js").Client} client
 * @returns {() => void} unmount
 */
export function mount(root, client) {
  root.innerHTML = `
    <div id="generic">
      <form id="generic-form" autocomplete="off">
        <input id="generic-action" placeholder="action" required>
        <input id="generic-fields" placeholder='fields as JSON, e.g. {"x": 1}'>
        <button type="submit">Send</button>
      </form>
      <h3>State</h3>
      <pre id="generic-state"></pre>
      <h3>Messages</h3>
      <ol id="generic-log"></ol>
    </div>`;
  const state = root.querySelector("#generic-state");
  const log = root.querySelector("#generic-log");
  const form = root.querySelector("#generic-form");

  function append(text) {
    const item = document.createElement("li");
    item.textContent = text;
    log.prepend(item);
    while (log.children.length > 100) log.lastChild.remove();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const action = form.querySelector("#generic-action").value.trim();
    let fields = {};
    try {
      fields = JSON.parse(form.querySelector("#generic-fields").value || "{}");
    } catch (error) {
      append(`not JSON: ${error.message}`);
      return;
    }
    client
      .request(action, fields)
      .then((reply) => append(`→ ${JSON.stringify(reply)}`), (error) => append(`✗ ${error.code}: ${error.message}`));
  });

  const show = () => (state.textContent = JSON.stringify(client.state, null, 2));
  const unsubscribe = [
    client.on("state", show),
    client.on("*", (m) => {
      if (m.action !== "state" && m.action !== "patch") append(JSON.stringify(m));
    }),
  ];
  show();
  return () => unsubscribe.forEach((off) => off());
}
