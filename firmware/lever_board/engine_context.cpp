// The engine context: ticks and lick edges run through the state machine (machine_engine.h) one
// at a time, in board-time order (docs/state_machine.md sections 1, 4, 4a): an edge stamped
// before tick k's time goes first, one stamped at or after it goes after tick k. Whichever
// interrupt (the tick's compare A, the lick pin) finds the engine idle runs it with interrupts
// enabled (the UART and the frame clock are never blocked) until nothing is due; an interrupt
// that finds it busy only queues its work. One translation unit with the engine, built -O2, so
// that the tick and the edge step inline into the interrupts that run them.
#pragma GCC optimize("O2")
#include "engine_context.h"

#include <avr/interrupt.h>
#include <avr/io.h>

#include "machine.h"
#include "machine_engine.h"
#include "timebase.h"

static volatile uint16_t tick_overruns;
static volatile uint16_t edges_dropped;
static volatile uint8_t ticks_fired;  // compare-A matches, mod 256
static uint8_t ticks_run;             // ticks run, mod 256 (may lead ticks_fired by one)
static uint32_t next_k;               // the next tick to run
static uint32_t next_t = SAMPLE_PERIOD_US;  // its time (µs, mod 2^32)
static int16_t last_x;                // the last tick's lever sample
static bool engine_busy;
// The running step is a tick that has made all its changes: a lick edge that comes now will be
// the next step (if nothing is queued before it), so its pins can be driven at once.
static volatile bool tick_settled;

#define ED_RING 4  // power of two; edges closer than an engine step are rare
static uint32_t edge_t[ED_RING];  // stamps (µs, low 32 bits)
static uint8_t edge_level[ED_RING];  // the level after each edge
static uint8_t ed_head, ed_tail;
static const volatile uint8_t* lick_in;
static uint8_t lick_mask;

static void run_tick(uint32_t k, uint32_t t_us_lo) {
  // started ADC_LEAD_US before the tick: normally long done
  while (ADCSRA & _BV(ADSC)) {
  }
  int16_t x = ADC;
  engine_tick(k, x, t_us_lo);
  last_x = x;
  // after the tick has settled (an edge waiting on it already has its pins)
  board_on_sample(k, x);
}

// Called with interrupts off, from an ISR; returns with interrupts off.
static void engine_run() {
  if (engine_busy) return;
  engine_busy = true;
  for (;;) {
    uint8_t tail = ed_tail;
    // an edge stamped before the next tick's time goes first; one stamped at or after it means
    // that time has come, even if the compare interrupt (lower priority) has not run yet
    if (tail != ed_head && (int32_t)(edge_t[tail] - next_t) < 0) {
      uint32_t t = edge_t[tail];
      uint8_t level = edge_level[tail];
      ed_tail = (tail + 1) & (ED_RING - 1);
      tick_settled = false;
      engine_edge_pins(level);
      sei();
      engine_edge(level, t, last_x);
      cli();
      continue;
    }
    int8_t due = (int8_t)(ticks_fired - ticks_run);
    if (tail == ed_head && due <= 0) break;
    if (due > 1) {
      // ticks that came due while the engine was busy for longer than a period: skip them
      uint8_t skip = due - 1;
      tick_overruns = tick_overruns <= 0xFFFF - skip ? tick_overruns + skip : 0xFFFF;
      ticks_run += skip;
      next_k += skip;
      next_t += (uint32_t)skip * SAMPLE_PERIOD_US;
    }
    uint32_t k = next_k++;
    uint32_t t = next_t;
    next_t += SAMPLE_PERIOD_US;
    ticks_run++;
    tick_settled = false;
    sei();
    run_tick(k, t);
    cli();
  }
  tick_settled = false;
  engine_busy = false;
}

static void engine_tick_settled() {
  cli();
  tick_settled = true;
  uint8_t tail = ed_tail;
  // an edge that came during the tick and goes before the next one: its pins now
  if (tail != ed_head && (int32_t)(edge_t[tail] - next_t) < 0) engine_edge_pins(edge_level[tail]);
  sei();
}

void on_sample_start() { ADCSRA |= _BV(ADSC); }

ISR(TIMER1_COMPA_vect) {
  timebase_schedule_next_tick();
  ticks_fired++;
  engine_run();
}

static void push_lick_edge() {
  uint32_t t = timebase_now_us_lo();
  uint8_t level = (*lick_in & lick_mask) ? 1 : 0;
  // The engine idle (or in a tick that has made all its changes), nothing queued and no tick
  // due before this edge: the edge is its very next step, so its output pins can be driven
  // now, before the engine even gets to it.
  if ((!engine_busy || tick_settled) && ed_tail == ed_head && ticks_fired == ticks_run &&
      (int32_t)(t - next_t) < 0)
    engine_edge_pins(level);
  uint8_t next = (ed_head + 1) & (ED_RING - 1);
  if (next == ed_tail) {
    if (edges_dropped != 0xFFFF) edges_dropped++;
    return;
  }
  edge_t[ed_head] = t;
  edge_level[ed_head] = level;
  ed_head = next;
}

// Our own external-interrupt vector rather than attachInterrupt(): its shared handler saves
// every register before it even calls us, and the lick stamp is the first thing we do.
#if defined(__AVR_ATmega2560__)
#define LICK_VECT INT5_vect  // pin 3
#else
#define LICK_VECT INT1_vect  // pin 3
#endif

ISR(LICK_VECT) {
  push_lick_edge();
  engine_run();
}

void engine_context_begin(const volatile uint8_t* lick_pin_in, uint8_t lick_pin_mask) {
  lick_in = lick_pin_in;
  lick_mask = lick_pin_mask;
  // both edges of pin 3
#if defined(__AVR_ATmega2560__)
  EICRB = (EICRB & ~(_BV(ISC51) | _BV(ISC50))) | _BV(ISC50);
  EIFR = _BV(INTF5);
  EIMSK |= _BV(INT5);
#else
  EICRA = (EICRA & ~(_BV(ISC11) | _BV(ISC10))) | _BV(ISC10);
  EIFR = _BV(INTF1);
  EIMSK |= _BV(INT1);
#endif
  // a level already high counts as an edge now (the engine starts from "low")
  cli();
  push_lick_edge();
  sei();
}

uint32_t engine_last_tick() { return next_k ? next_k - 1 : 0; }

uint16_t engine_tick_overruns() {
  cli();
  uint16_t n = tick_overruns;
  sei();
  return n;
}

uint16_t engine_edges_dropped() {
  cli();
  uint16_t n = edges_dropped;
  sei();
  return n;
}
