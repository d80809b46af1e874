// The monthly report page: server-rendered; only the top bar's live parts (connection, alarms) run here.
import { connect } from "/static/board.js";

connect({ bay: () => {} });
