// Live bay board: the shared components, nothing else.
import { bayBoard, connect } from "/static/board.js";

connect({ bay: bayBoard(document.getElementById("bays")) });
