// The engine context (engine_context.cpp): runs the state machine's ticks and lick edges in
// board-time order, from the tick's compare-A interrupt and the lick pin's interrupt.
#pragma once
#include <stdint.h>

// Enable the lick pin's interrupt (both edges); lick_in/lick_mask read its level.
void engine_context_begin(const volatile uint8_t* lick_in, uint8_t lick_mask);
// The last tick run (0 before the first); call with interrupts off.
uint32_t engine_last_tick();
uint16_t engine_tick_overruns();
uint16_t engine_edges_dropped();  // lick edges that found the ring full

// Provided by the sketch: each tick's lever sample, after the tick (engine context, interrupts
// enabled).
void board_on_sample(uint32_t k, int16_t x);
