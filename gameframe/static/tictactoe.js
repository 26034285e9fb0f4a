/**
 * The tic-tac-toe view: `place {cell}` (0-8); the room sends `start {marks,
 * turn}`, `placed {player_id, cell, mark, turn}` and `game_over {winner,
 * reason, board}`, and refuses with not_your_turn, cell_taken, not_started
 * or game_over. The whole game is also the room's state (`board`, `marks`,
 * `turn`, `over`, `wins`): a player back after a drop or a server restart
 * redraws from it, and signed-in players see their wins.
 */

/**
 * @param {HTMLElement} root where to draw
 * @param {import("./gameframe.js").Client} client
 * @returns {() => void} unmount
 */
export function mount(root, client) {
  root.innerHTML = `
    <div id="tictactoe" data-phase="waiting">
      <p id="ttt-status" aria-live="polite"></p>
      <div id="board" role="grid"></div>
      <p id="ttt-result" hidden></p>
      <button id="ttt-again" type="button" hidden>Play again</button>
    </div>`;
  const game = root.querySelector("#tictactoe");
  const status = root.querySelector("#ttt-status");
  const result = root.querySelector("#ttt-result");
  const again = root.querySelector("#ttt-again");
  const cells = Array.from({ length: 9 }, (_, i) => {
    const cell = document.createElement("button");
    cell.type = "button";
    cell.className = "cell";
    cell.dataset.cell = String(i);
    cell.setAttribute("aria-label", `cell ${i}`);
    cell.addEventListener("click", () => place(i));
    return cell;
  });
  root.querySelector("#board").append(...cells);

  let board = Array(9).fill(null);
  let marks = {};
  let turn = null;
  let phase = "waiting"; // waiting, playing, over
  let note = "";

  function render() {
    const mine = marks[client.playerId];
    game.dataset.phase = phase;
    game.dataset.turn = turn === null ? "" : turn === client.playerId ? "you" : "opponent";
    cells.forEach((cell, i) => {
      cell.textContent = board[i] ?? "";
      cell.dataset.mark = board[i] ?? "";
      cell.disabled = phase !== "playing" || turn !== client.playerId || board[i] !== null;
    });
    if (phase === "waiting") status.textContent = "Waiting for a second player…";
    else if (phase === "playing") {
      status.textContent = turn === client.playerId ? `Your turn (${mine})` : `Their turn: you are ${mine}`;
    } else status.textContent = "Game over.";
    const won = wins[client.playerId];
    if (won !== undefined) status.textContent += ` (your wins: ${won})`;
    if (note) status.textContent += ` ${note}`;
  }

  function place(cell) {
    note = "";
    client.request("place", { cell }).catch((error) => {
      note = `(${error.message})`;
      status.dataset.error = error.code;
      render();
    });
  }

  let wins = {};

  const unsubscribe = [
    client.on("state", (state) => {
      // The full picture (a reconnect, a restart, patches): draw from it.
      if (!state || !Array.isArray(state.board)) return;
      board = [...state.board];
      marks = state.marks;
      turn = state.turn;
      wins = state.wins || {};
      if (state.over) phase = "over";
      else if (turn !== null) phase = "playing";
      render();
    }),
    client.on("start", (m) => {
      marks = m.marks;
      turn = m.turn;
      phase = "playing";
      render();
    }),
    client.on("placed", (m) => {
      board[m.cell] = m.mark;
      turn = m.turn;
      note = "";
      render();
    }),
    client.on("game_over", (m) => {
      board = m.board;
      turn = null;
      phase = "over";
      result.hidden = false;
      result.dataset.winner = m.winner ?? "";
      result.dataset.reason = m.reason;
      if (m.winner === null) result.textContent = "A draw.";
      else if (m.winner === client.playerId) result.textContent = m.reason === "forfeit" ? "You win: they left." : "You win!";
      else result.textContent = "You lose.";
      again.hidden = false;
      render();
    }),
  ];

  again.addEventListener("click", async () => {
    again.disabled = true;
    try {
      await client.leave();
      await client.join_or_create("tictactoe");
    } catch (error) {
      note = `(${error.message})`;
      render();
    }
  });

  render();
  return () => unsubscribe.forEach((off) => off());
}
