// motor-rig lever board firmware, v1.0.0 (wire protocol v1: docs/protocol.md; state machine:
// docs/state_machine.md). Arduino Uno (ATmega328P) or Mega 2560; open this folder in the Arduino
// IDE and upload, or `make -C firmware`. Wiring: docs/firmware.md.
//
// Real-time split: the 1 kHz tick (Timer1 compare A) starts an ADC conversion; the ADC-complete
// interrupt runs the whole tick (outputs, lick, host requests, state machine, start, stream) with
// interrupts re-enabled so the UART never overruns at 1 Mbaud. The main loop only moves bytes.
#include "board.h"

void setup() { board_setup(); }

void loop() { board_loop(); }
