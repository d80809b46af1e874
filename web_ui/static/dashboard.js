// Live bay board: the shared components, nothing else.
import { bayBoard, connect, healthPanel } from "/static/board.js";

connect({
  bay: bayBoard(document.getElementById("bays")),
  health: healthPanel(document.getElementById("health")),
});
