// The engine (docs/state_machine.md sections 1-6): engine_tick() and engine_edge() run in the
// engine context (board.cpp), one at a time; the main loop's entry points below touch shared
// state only with interrupts off. Included by board.cpp only (one translation unit, so that the
// compiler inlines the tick and the edge step into the interrupts that run them: a lick edge
// that arrives during a tick waits for all of it).
#pragma once
#include "machine.h"

#include <avr/interrupt.h>
#include <avr/pgmspace.h>

#include "protocol.h"
#include "timebase.h"

// ---------------------------------------------------------------- machine buffers (double)
static uint8_t machines[2][MAX_MACHINE_BYTES];
static uint8_t active_buf;        // index of the machine the running trial uses
static bool pending_committed;    // machines[active_buf ^ 1] is ready to start
static uint16_t load_total, load_received, load_crc;
static bool loading;

// ---------------------------------------------------------------- run state
static bool running, start_queued;
static uint32_t trial_num, queued_trial_num;
static uint8_t state;
static bool levels_next;  // the next tick takes lever/lick candidates from levels (4.4)
static const uint8_t* cur_tr;  // the current state's transitions (event, target) ...
static uint8_t cur_nt;         // ... and their number
static bool tup_on;
static uint32_t tup_at;
static uint8_t gtimer_on;  // bit i: global timer i runs
static uint32_t gtimer_at[MAX_GTIMERS];
static bool det_up, det_rest, det_over;
static uint8_t lick_prev;
static uint8_t soft_pending;  // soft events of this tick (bit n), for the candidates
static uint8_t soft_order[8];  // and in arrival order, for the trail
static uint8_t n_soft;

// ---------------------------------------------------------------- outputs
static bool valve_on, valve_timed;
static uint32_t valve_end;
static bool tone_on, tone_timed;
static uint32_t tone_end;
static uint8_t ttl;
static bool code_active;
static uint8_t code_p;  // pattern ms at the next tick (0..124)
static uint16_t code_value;

// ---------------------------------------------------------------- host link state
static uint16_t max_valve_ms = 500;
static uint16_t host_timeout_ms = 2000;
static volatile uint32_t last_host_k;
static volatile bool host_seen_flag;
static bool host_timed_out;
// last tick run (-1 before the first): host-silence bookkeeping, and an edge's time base
static uint32_t now_k = 0xFFFFFFFFUL;

// ---------------------------------------------------------------- rings
#if BOARD_KIND == 1
#define EVENT_RING 12  // an Uno has 2 KB of RAM
#else
#define EVENT_RING 64
#endif
static Event events[EVENT_RING];
static volatile uint8_t ev_head, ev_tail;
uint16_t engine_events_dropped;

struct HostReq {
  uint8_t kind;
  uint16_t a, b;
};
#define HREQ_RING 4  // host requests between two ticks
static HostReq hreqs[HREQ_RING];
static volatile uint8_t hq_head, hq_tail;

// Time base of what the current step does: durations count from tick cur_k (a tick: its own
// index; an edge: the next tick), events are stamped cur_t (µs, low 32 bits).
static uint32_t cur_k;
static uint32_t cur_t;

static void emit(uint8_t code, uint8_t arg, int32_t value) {
  uint8_t next = ev_head + 1 == EVENT_RING ? 0 : ev_head + 1;
  if (next == ev_tail) {
    if (engine_events_dropped != 0xFFFF) engine_events_dropped++;
    return;
  }
  Event& e = events[ev_head];
  e.t_us_lo = cur_t;
  e.code = code;
  e.arg = arg;
  e.value = value;
  ev_head = next;
}

bool engine_pop_event(Event* e) {
  if (ev_tail == ev_head) return false;
  *e = events[ev_tail];
  ev_tail = ev_tail + 1 == EVENT_RING ? 0 : ev_tail + 1;
  return true;
}

// ---------------------------------------------------------------- blob access
static inline const uint8_t* M() { return machines[active_buf]; }
static inline const uint8_t* S(uint8_t s) { return M() + 32 + 18 * (uint16_t)s; }
static inline uint32_t fire_at(uint32_t k0, uint32_t d) { return k0 + (d ? d : 1); }
static inline bool due(uint32_t k, uint32_t at) { return (int32_t)(k - at) >= 0; }

// ---------------------------------------------------------------- outputs
static void valve_set(bool on, uint8_t source, uint16_t pulse_ms) {
  // An untimed opening (a state's `valve: on`) still closes after max_valve_ms, counted from
  // when the valve opened: valve_end doubles as that deadline (no extra RAM on the Uno).
  bool was_untimed_open = valve_on && !valve_timed;
  valve_on = on;
  valve_timed = on && pulse_ms;
  if (valve_timed)
    valve_end = cur_k + pulse_ms;
  else if (on && !was_untimed_open)
    valve_end = cur_k + max_valve_ms;
  out_valve(on);
  if (on)
    emit(EV_VALVE_ON, source, pulse_ms);
  else
    emit(EV_VALVE_OFF, source, 0);
}

static void tone_set(uint16_t freq, uint8_t source, uint16_t ms) {
  tone_on = freq != 0;
  tone_timed = tone_on && ms;
  if (tone_timed) tone_end = cur_k + ms;
  out_tone(freq);
  if (tone_on)
    emit(EV_TONE_ON, source, freq);
  else
    emit(EV_TONE_OFF, source, 0);
}

static void ttl_set(uint8_t mask, uint8_t value) {
  ttl = (ttl & ~mask) | (value & mask);
  out_ttl(ttl);
  emit(EV_TTL, ttl, mask);
}

// ---------------------------------------------------------------- trial flow
static void end_trial(uint8_t terminal) {
  running = false;
  gtimer_on = 0;
  tup_on = false;
  emit(EV_TRIAL_END, terminal, (int32_t)trial_num);
}

// The target of `ev` from the current state, 0xFF if none.
static uint8_t target_of(uint8_t ev) {
  const uint8_t* tr = cur_tr;
  for (uint8_t j = cur_nt; j; j--, tr += 2)
    if (tr[0] == ev) return tr[1];
  return 0xFF;
}

// Drive the valve and TTL pins that entering state record r sets, ahead of its events (which
// follow in the specified order and write the same levels again): the input -> output latency
// is measured at these pins.
static inline void entry_pins(const uint8_t* r) {
  if (r[1]) out_valve(r[1] != 2);
  if (r[5]) out_ttl((ttl & ~r[5]) | (r[10] & r[5]));
}

void engine_edge_pins(uint8_t level) {
  if (!running || level == lick_prev) return;
  uint8_t target = target_of(level ? EV_LICK_ON : EV_LICK_OFF);
  if (target != 0xFF) entry_pins(S(target));
}

// Enter state s (section 6). `first`, if not 0, is an input event to emit before everything
// else but after the pins are driven (engine_edge).
static void enter(uint8_t s, uint8_t cause, uint8_t first = 0) {
  const uint8_t* r = S(s);
  entry_pins(r);
  if (first) emit(first, 0, 0);
  state = s;
  cur_tr = M() + 32 + 18 * (uint16_t)M()[1] + 2 * (uint16_t)r[16];
  cur_nt = r[17];
  emit(EV_STATE_ENTER, s, cause);
  levels_next = true;
  tup_on = r[0] & 2;
  if (tup_on) tup_at = fire_at(cur_k, get_u32(r + 12));
  switch (r[1]) {
    case 1: valve_set(true, 0, 0); break;
    case 2: valve_set(false, 0, 0); break;
    case 3: {
      uint16_t ms = get_u16(r + 2);
      valve_set(true, 0, ms > max_valve_ms ? max_valve_ms : ms);
      break;
    }
  }
  switch (r[4]) {
    case 1: tone_set(get_u16(r + 6), 0, 0); break;
    case 2: tone_set(0, 0, 0); break;
    case 3: tone_set(get_u16(r + 6), 0, get_u16(r + 8)); break;
  }
  if (r[5]) ttl_set(r[5], r[10]);
  if (r[0] & 4) {
    code_value = trial_num & 0xFFF;
    code_active = true;
    code_p = (uint8_t)(now_k + 1 - cur_k);  // 1 after a tick's entry, 0 after an edge's
    out_trial_code(true);
    emit(EV_TRIAL_CODE, 0, code_value);
  }
  gtimer_on &= ~(r[11] >> 4);
  for (uint8_t i = 0; i < MAX_GTIMERS; i++) {
    if (r[11] & (1 << i)) {
      gtimer_on |= 1 << i;
      gtimer_at[i] = fire_at(cur_k, get_u32(M() + 16 + 4 * i));
    }
  }
  if (r[0] & 1) {
    if (valve_on && !valve_timed) valve_set(false, 0, 0);
    if (tone_on && !tone_timed) tone_set(0, 0, 0);
    end_trial(s);
  }
}

static void start_trial(int16_t x) {
  start_queued = false;
  active_buf ^= 1;
  pending_committed = false;
  trial_num = queued_trial_num;
  running = true;
  const uint8_t* m = M();
  emit(EV_TRIAL_START, m[3], (int32_t)trial_num);
  int32_t v = (m[4] & 1) ? -(int32_t)x : x;
  det_up = v >= (int16_t)get_u16(m + 6);
  det_rest = v >= (int16_t)get_u16(m + 10) && v <= (int16_t)get_u16(m + 12);
  det_over = (m[4] & 2) && v >= (int16_t)get_u16(m + 8);
  gtimer_on = 0;
  enter(m[3], 0);
}

static void outputs_off() {
  if (valve_on) valve_set(false, 2, 0);
  if (tone_on) tone_set(0, 2, 0);
}

// ABORT_TRIAL: a running trial ends "aborted" with its outputs off; an idle board keeps the
// outputs the host set (RESET_SAFE turns those off too).
static void abort_trial() {
  start_queued = false;
  if (running) {
    outputs_off();
    end_trial(0xFF);
  }
}

// Trial-code pattern (TASKS.md): 5 ms sync, then 12 bits MSB first, 5 ms each, 5 ms gaps.
static void trial_code_step() {
  if (!code_active) return;
  uint8_t p = code_p;
  if (p >= 125) {
    code_active = false;
    out_trial_code(false);
    return;
  }
  code_p = p + 1;
  uint8_t slot = p / 5;
  bool level = slot == 0 ? true : (slot & 1) ? false : (code_value >> (12 - slot / 2)) & 1;
  out_trial_code(level);
}

static void apply_host_requests() {
  while (hq_tail != hq_head) {
    HostReq& q = hreqs[hq_tail];
    switch (q.kind) {
      case HREQ_ABORT: abort_trial(); break;
      case HREQ_RESET_SAFE:
        abort_trial();
        outputs_off();
        pending_committed = false;
        loading = false;
        if (ttl) ttl_set(0xFF, 0);
        break;
      case HREQ_SOFT:
        if (running && n_soft < 8) {
          soft_pending |= 1 << q.a;
          soft_order[n_soft++] = q.a;
        }
        break;
      case HREQ_VALVE:
        if (q.a == 0)
          valve_set(false, 1, 0);
        else
          valve_set(true, 1, q.a > max_valve_ms ? max_valve_ms : q.a);
        break;
      case HREQ_TONE: tone_set(q.b ? q.a : 0, 1, q.b); break;
      case HREQ_TTL: ttl_set((uint8_t)q.a, (uint8_t)q.b); break;
    }
    hq_tail = (hq_tail + 1) & (HREQ_RING - 1);
  }
}

// Candidate bits in transition priority order (docs/state_machine.md 4.5).
static const uint8_t priority[] PROGMEM = {EV_LEVER_OVER, EV_LEVER_DOWN, EV_LEVER_UP, EV_LEVER_UNREST,
                                   EV_LEVER_REST, EV_LICK_ON, EV_LICK_OFF, EV_TUP,
                                   EV_GTIMER0, EV_GTIMER0 + 1, EV_GTIMER0 + 2, EV_GTIMER0 + 3,
                                   0, 0, 0, 0,
                                   EV_SOFT0, EV_SOFT0 + 1, EV_SOFT0 + 2, EV_SOFT0 + 3,
                                   EV_SOFT0 + 4, EV_SOFT0 + 5, EV_SOFT0 + 6, EV_SOFT0 + 7};
#define C(i) ((uint32_t)1 << (i))
enum { C_OVER, C_DOWN, C_UP, C_UNREST, C_REST, C_LICK_ON, C_LICK_OFF, C_TUP, C_GT0, C_SOFT0 = 16 };

// Step 4 (and 4a.3): a queued start happens once no trial runs.
static void start_step(int16_t x) {
  if (running || !start_queued) return;
  if (host_timed_out) {
    start_queued = false;
    emit(EV_START_DROPPED, 0, (int32_t)queued_trial_num);
  } else {
    start_trial(x);
  }
}

void engine_edge(uint8_t level, uint32_t t_us_lo, int16_t x_last) {
  if (level == lick_prev) return;  // a pulse shorter than the interrupt latency
  lick_prev = level;
  cur_k = now_k + 1;
  cur_t = t_us_lo;
  uint8_t ev = level ? EV_LICK_ON : EV_LICK_OFF;
  uint8_t target = running ? target_of(ev) : 0xFF;
  if (target == 0xFF) {
    emit(ev, 0, 0);
    return;
  }
  // enter() drives the target's valve/TTL pins before it emits anything; our event goes
  // first in the trail, so emit it in between, after those pins
  enter(target, ev, ev);
  // a trial that ended at this edge is followed at once by a queued one
  start_step(x_last);
}

// Called once the tick has made every change to the machine (board.cpp: drives the pins of an
// edge that waits for this tick, without waiting for the rest of the tick's bookkeeping).
static void engine_tick_settled();

void engine_tick(uint32_t k, int16_t x, uint32_t t_us_lo) {
  cur_k = k;
  now_k = k;
  cur_t = t_us_lo;
  // 1. timed outputs expire
  if (valve_on && due(k, valve_end)) valve_set(false, 0, 0);  // pulse end, or the hard cap
  if (tone_timed && tone_on && due(k, tone_end)) tone_set(0, 0, 0);
  if (code_active) trial_code_step();
  // host requests land after step 1; host silence is judged here too
  soft_pending = 0;
  n_soft = 0;
  if (host_seen_flag) {
    host_seen_flag = false;
    if (host_timed_out) {
      host_timed_out = false;
      emit(EV_HOST_RESUMED, 0, 0);
    }
  }
  if (host_timeout_ms && !host_timed_out && k - last_host_k > host_timeout_ms) {
    host_timed_out = true;
    emit(EV_HOST_TIMEOUT, 0, (int32_t)(k - last_host_k));
  }
  if (hq_tail != hq_head) apply_host_requests();
  // 3. the machine
  if (running) {
    const uint8_t* m = M();
    uint32_t cand = 0;
    // int16 comparisons (x is a 10-bit sample, so -x fits); int32 only where the hysteresis
    // could take a threshold out of range: keeps the tick short for a lick edge waiting on it
    uint8_t flags = m[4];
    int16_t v = (flags & 1) ? -x : x;
    uint16_t h = get_u16(m + 14);
    if (flags & 2) {
      int16_t over = (int16_t)get_u16(m + 8);
      if (!det_over) {
        if (v >= over) {
          det_over = true;
          emit(EV_LEVER_OVER, 0, x);
          cand |= C(C_OVER);
        }
      } else if ((int32_t)v < (int32_t)over - h) {
        det_over = false;
      }
    }
    int16_t up = (int16_t)get_u16(m + 6);
    if (!det_up) {
      if (v >= up) {
        det_up = true;
        emit(EV_LEVER_UP, 0, x);
        cand |= C(C_UP);
      }
    } else if ((int32_t)v < (int32_t)up - h) {
      det_up = false;
      emit(EV_LEVER_DOWN, 0, x);
      cand |= C(C_DOWN);
    }
    int16_t lo = (int16_t)get_u16(m + 10), hi = (int16_t)get_u16(m + 12);
    if (!det_rest) {
      if ((int32_t)v >= (int32_t)lo + h && (int32_t)v <= (int32_t)hi - h) {
        det_rest = true;
        emit(EV_LEVER_REST, 0, x);
        cand |= C(C_REST);
      }
    } else if (v < lo || v > hi) {
      det_rest = false;
      emit(EV_LEVER_UNREST, 0, x);
      cand |= C(C_UNREST);
    }
    if (tup_on && due(k, tup_at)) {
      tup_on = false;
      emit(EV_TUP, state, 0);
      cand |= C(C_TUP);
    }
    // (byte-aligned candidate fields and no variable shifts: the tick is short, so that a lick
    // edge that comes during it waits little)
    if (gtimer_on) {
      uint8_t bit = 1;
      for (uint8_t i = 0; i < MAX_GTIMERS; i++, bit <<= 1) {
        if ((gtimer_on & bit) && due(k, gtimer_at[i])) {
          gtimer_on &= ~bit;
          emit(EV_GTIMER0 + i, 0, 0);
          cand |= (uint32_t)bit << C_GT0;
        }
      }
    }
    if (n_soft) {
      for (uint8_t i = 0; i < n_soft; i++) emit(EV_SOFT0 + soft_order[i], 0, 0);
      cand |= (uint32_t)soft_pending << C_SOFT0;
    }
    if (levels_next) {
      levels_next = false;
      cand &= ~(C(C_OVER) | C(C_DOWN) | C(C_UP) | C(C_UNREST) | C(C_REST));
      cand |= det_up ? C(C_UP) : C(C_DOWN);
      cand |= det_rest ? C(C_REST) : C(C_UNREST);
      if (det_over && (m[4] & 2)) cand |= C(C_OVER);
      cand |= lick_prev ? C(C_LICK_ON) : C(C_LICK_OFF);
    }
    // shift the candidates down rather than test C(p): a variable 32-bit shift is a loop
    for (uint8_t p = 0; cand; p++, cand >>= 1) {
      if (!(cand & 1)) continue;
      uint8_t ev = pgm_read_byte(&priority[p]);
      uint8_t target = target_of(ev);
      if (target != 0xFF) {
        enter(target, ev);
        break;
      }
    }
  }
  // 4. start
  start_step(x);
  engine_tick_settled();
}


// ---------------------------------------------------------------- main-loop entry points
void engine_begin() {
  out_valve(false);
  out_tone(0);
  out_ttl(0);
  out_trial_code(false);
}

uint8_t engine_load_begin(uint16_t total_len, uint16_t blob_crc, uint16_t* detail) {
  uint8_t err = 0;
  cli();
  if (total_len > MAX_MACHINE_BYTES || total_len < 32) {
    *detail = MAX_MACHINE_BYTES;
    err = ERR_MACHINE_TOO_BIG;
  } else if (start_queued) {
    *detail = 0;
    err = ERR_BUSY;
  } else {
    pending_committed = false;
    loading = true;
    load_total = total_len;
    load_received = 0;
    load_crc = blob_crc;
  }
  sei();
  return err;
}

uint8_t engine_load_chunk(uint16_t offset, const uint8_t* data, uint8_t n, uint16_t* detail) {
  // Only the main loop touches the pending buffer while loading (start_queued is false).
  if (!loading || offset != load_received || (uint32_t)offset + n > load_total) {
    *detail = loading ? load_received : 0;
    return ERR_LOAD_ORDER;
  }
  uint8_t* dst = machines[active_buf ^ 1] + offset;
  for (uint8_t i = 0; i < n; i++) dst[i] = data[i];
  load_received += n;
  return 0;
}

uint8_t engine_load_commit(uint16_t* detail) {
  if (!loading || load_received != load_total) {
    *detail = loading ? load_received : 0;
    return ERR_LOAD_ORDER;
  }
  const uint8_t* blob = machines[active_buf ^ 1];
  uint16_t crc = crc16(blob, load_total);
  loading = false;
  if (crc != load_crc) {
    *detail = crc;
    return ERR_MACHINE_CRC;
  }
  uint8_t err = machine_validate(blob, load_total, max_valve_ms, detail);
  if (err) return err;
  cli();
  pending_committed = true;
  sei();
  return 0;
}

uint8_t engine_start(uint32_t num) {
  uint8_t err = 0;
  cli();
  if (start_queued)
    err = ERR_BUSY;
  else if (!pending_committed)
    err = ERR_NO_MACHINE;
  else {
    start_queued = true;
    queued_trial_num = num;
  }
  sei();
  return err;
}

void engine_stop_queued() {
  cli();
  start_queued = false;
  sei();
}

bool engine_request(uint8_t kind, uint16_t a, uint16_t b) {
  bool ok = false;
  cli();
  uint8_t next = (hq_head + 1) & (HREQ_RING - 1);
  if (next != hq_tail) {
    hreqs[hq_head] = HostReq{kind, a, b};
    hq_head = next;
    ok = true;
  }
  sei();
  return ok;
}

void engine_host_seen() {
  cli();
  last_host_k = now_k;
  host_seen_flag = true;
  sei();
}

void engine_set_config(uint16_t valve_cap_ms, uint16_t timeout_ms) {
  cli();
  max_valve_ms = valve_cap_ms;
  host_timeout_ms = timeout_ms;
  sei();
}

uint16_t engine_max_valve_ms() { return max_valve_ms; }

uint8_t engine_status() {
  cli();
  uint8_t s = (running ? 1 : 0) | (start_queued ? 2 : 0) | (pending_committed ? 4 : 0) |
              (host_timed_out ? 8 : 0);
  sei();
  return s;
}

uint32_t engine_trial_num() {
  cli();
  uint32_t n = trial_num;
  sei();
  return n;
}

uint8_t engine_state() {
  cli();
  uint8_t s = running ? state : 0xFF;
  sei();
  return s;
}
