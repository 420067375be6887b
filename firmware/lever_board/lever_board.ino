// motor-rig lever board firmware, v1.0.0 (wire protocol v1: docs/protocol.md; state machine:
// docs/state_machine.md). Arduino Uno (ATmega328P) or Mega 2560; open this folder in the Arduino
// IDE and upload, or `make -C firmware`. Wiring: docs/firmware.md.
//
// Real-time split: Timer1 compare B starts the lever's ADC conversion 64 µs before each 1 kHz
// tick; compare A (the tick) and the lick pin's interrupt (each edge, stamped in the interrupt)
// run the state machine one step at a time in board-time order, with interrupts re-enabled so
// the UART never overruns at 1 Mbaud. The main loop only moves bytes.
#include "board.h"

void setup() { board_setup(); }

void loop() { board_loop(); }
