// Entry points of the lever board firmware (board.cpp), called by lever_board.ino.
#pragma once

void board_setup();
void board_loop();
