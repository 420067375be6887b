// Step generation: a second-order integer accumulator ("DDS") evaluated once per 50 us tick.
//
// Why exact: the rod angle of a linear ramp is s(t) = spr/60 * (r0 t + a t^2 / 2). Over tick j
// (h = 50 us) it advances by spr/60 * (r0 h + a h^2 (2j+1)/2), the ramp's exact integral over that
// tick. With rpm in milli-rpm and the ramp in ms this is, times DEN = 4.8e10 * ramp_ms,
//     vel(j) = spr * (40 * ramp_ms * r0 + (r1 - r0) * (2j + 1))      (an integer)
// so pos += vel each tick and a step whenever pos >= DEN keeps the step count equal to
// floor(s(t_tick)) at every tick, with no rounding that accumulates over a 300 s ramp. After the
// ramp the velocity is exactly r1. The only error left is the 50 us tick jitter of each edge.
//
// The 64-bit DDS runs in the main loop (rod_service), a few steps ahead, and queues the tick of
// each step; the tick ISR only compares its tick count with the queue head. avr-gcc's 64-bit
// arithmetic inside the ISR took most of the 800-cycle tick and starved everything else.
#include "rod.h"

#include <Arduino.h>
#include <avr/interrupt.h>
#include <avr/io.h>

// ---------------------------------------------------------------- pins (direct port access:
// the tick ISR has ~800 cycles, digitalRead on 10 pins would take most of them)
#if defined(__AVR_ATmega2560__)
// Mega: step D4 = PG5, dir D5 = PE3, enable D6 = PH3; falls A8..A12 = PK0..4; passive A0..A4 = PF0..4
#define STEP_PORT PORTG
#define STEP_DDR DDRG
#define STEP_BIT 5
#define DIR_DDR DDRE
#define DIR_PORT PORTE
#define DIR_BIT 3
#define EN_DDR DDRH
#define EN_PORT PORTH
#define EN_BIT 3
#define FALL_PIN PINK
#define FALL_PORT PORTK
#define FALL_DDR DDRK
#define PASS_PIN PINF
#define PASS_PORT PORTF
#define PASS_DDR DDRF
#else
// Uno: step D4 = PD4, dir D5 = PD5, enable D6 = PD6; falls D8..D12 = PB0..4; passive A0..A4 = PC0..4
#define STEP_PORT PORTD
#define STEP_DDR DDRD
#define STEP_BIT 4
#define DIR_DDR DDRD
#define DIR_PORT PORTD
#define DIR_BIT 5
#define EN_DDR DDRD
#define EN_PORT PORTD
#define EN_BIT 6
#define FALL_PIN PINB
#define FALL_PORT PORTB
#define FALL_DDR DDRB
#define PASS_PIN PINC
#define PASS_PORT PORTC
#define PASS_DDR DDRC
#endif
#define LANE_MASK 0x1F

// ---------------------------------------------------------------- state (ISR-owned)
static RodConfig cfg = {3200, 5, 500, LANE_MASK, 0, LANE_MASK};
static volatile bool running;
static uint64_t pos_num, vel_num, dvel_num, den, vel_end;  // generator (main loop) only
static uint32_t gen_tick;                                   // generator: ticks computed so far
static bool gen_done;
static volatile uint32_t tick;  // ISR: ticks since the ramp started
static uint32_t ramp_ticks, max_ticks;
#define STEP_Q 16  // power of two
static volatile uint32_t step_q[STEP_Q];
static volatile uint8_t step_head, step_tail;  // head: generator writes; tail: ISR reads
static volatile uint16_t late_steps;            // steps the generator queued too late
static volatile uint32_t steps;
static uint32_t start_mrpm_, end_mrpm_;
static uint16_t debounce_ticks;  // in lane samples (every 4 ticks = 200 us)
static uint8_t lane_phase;
static uint16_t slot_countdown, report_countdown;

// Step counts at every 10 ms slot boundary; the measured speed is taken over the last
// ROD_WINDOW_SLOTS slots plus the part of the current slot already elapsed.
static uint32_t slot_steps[ROD_WINDOW_SLOTS + 1];
static uint8_t slot_i;       // next entry to write
static uint8_t slots_filled;  // entries written so far (saturates at ROD_WINDOW_SLOTS + 1)

// Debounce: a trip starts at the onset edge and counts once it has lasted debounce_ticks.
struct Lane {
  uint16_t held;  // ticks the sensor has been tripped, saturating
  bool reported;  // this trip was sent; re-arm after a release
  uint64_t onset_us;
  RodSpeed onset;
};
static Lane lanes[2][ROD_MAX_LANES];  // [kind][lane]

// Single-producer (ISR) / single-consumer (loop) mailboxes.
#define HIT_Q 8  // power of two
static RodHit hitq[HIT_Q];
static volatile uint8_t hit_head, hit_tail;
static volatile bool started_flag, report_flag, ended_flag;
static uint64_t started_us;
static RodReport report;
static uint64_t ended_us;
static uint32_t ended_steps;
static uint8_t ended_reason;

// ISR context: raw speed counts, no division.
static void capture_speed(RodSpeed *sp) {
  sp->steps = steps;
  sp->tick = tick;
  if (slots_filled == 0) {
    sp->window_steps = 0;
    sp->window_ticks = 0;
    return;
  }
  // no % and no 32-bit multiply here: a report tick must stay inside its 50 us
  uint8_t n = slots_filled;  // boundaries available; the oldest is n - 1 slots back
  int8_t oldest = (int8_t)(slot_i - n);
  if (oldest < 0) oldest += ROD_WINDOW_SLOTS + 1;
  sp->window_steps = steps - slot_steps[(uint8_t)oldest];
  sp->window_ticks = (uint16_t)(ROD_SLOT_TICKS - slot_countdown) + (uint16_t)((n - 1) * ROD_SLOT_TICKS);
}

uint32_t rod_measured_mrpm(const RodSpeed *sp) {
  if (sp->window_ticks == 0) return 0;
  // rpm = steps / spr / (ticks / TICK_HZ) * 60, in milli-rpm
  return (uint32_t)(((uint64_t)sp->window_steps * 60000ULL * ROD_TICK_HZ) /
                    ((uint64_t)sp->window_ticks * cfg.steps_per_rev));
}

uint32_t rod_nominal_mrpm(uint32_t t) {
  if (t >= ramp_ticks) return end_mrpm_;
  return start_mrpm_ + (uint32_t)(((uint64_t)(end_mrpm_ - start_mrpm_) * t) / ramp_ticks);
}

static inline uint64_t tick_us();

static void end_ramp(uint8_t reason) {
  running = false;
  STEP_PORT &= ~_BV(STEP_BIT);
  ended_us = reason == ROD_STOP_CUTOFF ? tick_us() : rod_now_us();
  ended_steps = steps;
  ended_reason = reason;
  ended_flag = true;
}

// Lanes with a trip in progress or reported, per kind: the common case (nothing tripped, nothing
// to re-arm) costs a compare, which keeps the 50 us tick short.
static uint8_t busy[2];

static inline void sample_lanes(uint8_t kind, uint8_t raw, uint8_t active_low, uint8_t enabled) {
  uint8_t tripped = (uint8_t)((raw ^ active_low) & enabled);
  uint8_t todo = tripped | busy[kind];
  if (todo == 0) return;
  for (uint8_t i = 0; i < cfg.n_lanes; i++) {
    uint8_t bit = _BV(i);
    if (!(todo & bit)) continue;
    if (!(tripped & bit)) {
      if (busy[kind] & bit) {
        Lane &l = lanes[kind][i];
        l.held = 0;  // a release shorter than the debounce re-arms too: bounce ends a trip
        l.reported = false;
        busy[kind] &= (uint8_t)~bit;
      }
      continue;
    }
    Lane &l = lanes[kind][i];
    if (l.reported) continue;  // still down after its report (or since before the start)
    if (l.held == 0) {
      l.onset_us = tick_us();
      capture_speed(&l.onset);
      busy[kind] |= bit;
    }
    l.held++;
    if (!running) {
      l.reported = true;  // tripped while the rod is still: not a fall; re-arms on release
      continue;
    }
    if (l.held >= debounce_ticks) {
      l.reported = true;
      uint8_t next = (uint8_t)((hit_head + 1) & (HIT_Q - 1));
      if (next != hit_tail) {  // queue full: the loop is far behind; drop rather than block
        RodHit &h = hitq[hit_head];
        h.kind = kind;
        h.lane = i;
        h.t_us = l.onset_us;
        h.speed = l.onset;
        hit_head = next;
      }
    }
  }
}

// ---------------------------------------------------------------- clock
// Timer1 runs free at F_CPU/8 (0.5 us) and is extended by an overflow count, as the lever
// board's timebase: the same u64 us clock on both devices. Compare A fires every 50 us exactly
// (the compare value advances by 100 counts whatever the interrupt latency).
static volatile uint32_t t1_overflows;
static uint16_t next_compare;
#define TICK_COUNTS ((uint16_t)(F_CPU / 8 / ROD_TICK_HZ))

ISR(TIMER1_OVF_vect) { t1_overflows++; }

// Timer counts (0.5 us) hi:lo -> us, assembled bytewise: avr-gcc's 64-bit shifts and divides
// are library loops (a shift by 32 alone costs ~300 cycles, too much inside the 50 us tick).
static uint64_t counts_to_us(uint32_t hi, uint16_t lo) {
#if F_CPU == 16000000UL
  union {
    uint64_t v;
    uint16_t w[4];
  } u;
  uint32_t half_hi = hi >> 1;
  u.w[0] = (uint16_t)((lo >> 1) | ((uint16_t)(hi & 1) << 15));
  u.w[1] = (uint16_t)half_hi;
  u.w[2] = (uint16_t)(half_hi >> 16);
  u.w[3] = 0;
  return u.v;
#elif F_CPU == 8000000UL
  return ((uint64_t)hi << 16) | lo;
#else
#error "the rotarod clock supports 8 and 16 MHz"
#endif
}

// Time of the latest moment the timer read `count` (at most one wrap, 32 ms, ago).
static uint64_t time_at_count(uint16_t count) {
  uint8_t sreg = SREG;
  cli();
  uint16_t lo = TCNT1;
  uint32_t hi = t1_overflows;
  // an overflow after cli() is pending in TOV1 and not counted yet; a small lo means we read
  // after that wrap
  if ((TIFR1 & _BV(TOV1)) && lo < 0x8000) hi++;
  SREG = sreg;
  uint16_t back = (uint16_t)(lo - count);
  if (back > lo) hi--;  // borrow across the wrap
  return counts_to_us(hi, (uint16_t)(lo - back));
}

uint64_t rod_now_us() {
  uint8_t sreg = SREG;
  cli();
  uint16_t lo = TCNT1;
  uint32_t hi = t1_overflows;
  if ((TIFR1 & _BV(TOV1)) && lo < 0x8000) hi++;
  SREG = sreg;
  return counts_to_us(hi, lo);
}

// The compare value of the tick being processed: stamps are the tick's scheduled time, not the
// moment the ISR reached that line (which depends on what else the tick did).
static uint16_t tick_compare;
static inline uint64_t tick_us() { return time_at_count(tick_compare); }

static volatile uint16_t tick_overruns;
static inline void tick_body() __attribute__((always_inline));

ISR(TIMER1_COMPA_vect) {
  for (;;) {
    tick_compare = next_compare;
    next_compare += TICK_COUNTS;
    OCR1A = next_compare;
    tick_body();
    // A tick that ran past the next compare value would otherwise wait a whole 16-bit timer
    // wrap (32.8 ms) for its match: run the missed tick now and count it.
    if ((int16_t)(TCNT1 - next_compare) < 0) break;
    if (tick_overruns != 0xFFFF) tick_overruns++;
  }
}

uint16_t rod_tick_overruns() { return tick_overruns; }

static inline void tick_body() {
  // the pulse raised on the previous tick ends here: 50 us high, far above any driver's minimum
  STEP_PORT &= ~_BV(STEP_BIT);
  bool was_running = running;
  if (was_running) {
    uint32_t k = tick;  // this tick is at k * 50 us after the ramp start
    if (k == 0) {
      started_us = tick_us();
      started_flag = true;
    }
    uint8_t t = step_tail;
    if (t != step_head && step_q[t] <= k) {
      if (step_q[t] != k) late_steps++;
      step_tail = (uint8_t)((t + 1) & (STEP_Q - 1));
      STEP_PORT |= _BV(STEP_BIT);
      steps++;
    }
    // countdowns, not k % N: a 32-bit modulo costs ~600 cycles of the 800 in a tick
    if (k != 0 && --slot_countdown == 0) {
      slot_countdown = ROD_SLOT_TICKS;
      slot_steps[slot_i] = steps;
      if (++slot_i == ROD_WINDOW_SLOTS + 1) slot_i = 0;
      if (slots_filled < ROD_WINDOW_SLOTS + 1) slots_filled++;
    }
    if (k != 0 && --report_countdown == 0) {
      report_countdown = ROD_REPORT_TICKS;
      report.t_us = tick_us();
      capture_speed(&report.speed);
      report_flag = true;
    }
    if (k >= max_ticks) end_ramp(ROD_STOP_CUTOFF);
  }
  // each sensor kind every 4th tick (200 us resolution, far inside the 1 ms the fall time
  // needs): a busy lane loop costs ~250 cycles of the 800 in a tick
  lane_phase = (uint8_t)((lane_phase + 1) & 3);
  if (lane_phase == 0)
    sample_lanes(0, FALL_PIN, cfg.active_low_mask, LANE_MASK);
  else if (lane_phase == 2)
    sample_lanes(1, PASS_PIN, cfg.passive_active_low_mask, cfg.passive_mask);
  if (was_running) tick++;
}

void rod_init() {
  STEP_DDR |= _BV(STEP_BIT);
  DIR_DDR |= _BV(DIR_BIT);
  EN_DDR |= _BV(EN_BIT);
  STEP_PORT &= ~_BV(STEP_BIT);
  DIR_PORT &= ~_BV(DIR_BIT);
  EN_PORT &= ~_BV(EN_BIT);  // driver enabled (active low): a stopped rod holds, it does not freewheel
  FALL_DDR &= ~LANE_MASK;
  FALL_PORT |= LANE_MASK;  // pull-ups: trip plates switch to ground
  PASS_DDR &= ~LANE_MASK;
  PASS_PORT |= LANE_MASK;
  debounce_ticks = (uint16_t)(cfg.debounce_ms * (ROD_TICK_HZ / 4000));
  cli();
  TCCR1A = 0;
  TCCR1B = _BV(CS11);  // normal mode, clk/8 = 2 MHz
  TCNT1 = 0;
  t1_overflows = 0;
  next_compare = TICK_COUNTS;
  OCR1A = next_compare;
  TIFR1 = _BV(TOV1) | _BV(OCF1A) | _BV(OCF1B);
  TIMSK1 = _BV(TOIE1) | _BV(OCIE1A);
  sei();
}

uint8_t rod_configure(const RodConfig *c) {
  if (running) return ROD_ERR_RUNNING;
  if (c->steps_per_rev == 0 || c->n_lanes == 0 || c->n_lanes > ROD_MAX_LANES ||
      c->debounce_ms < 500 || c->debounce_ms > 3000)
    return ROD_ERR_ARGS;
  cli();
  cfg = *c;
  debounce_ticks = (uint16_t)(cfg.debounce_ms * (ROD_TICK_HZ / 4000));
  for (uint8_t k = 0; k < 2; k++)
    for (uint8_t i = 0; i < ROD_MAX_LANES; i++) lanes[k][i] = Lane();
  busy[0] = busy[1] = 0;
  sei();
  return ROD_OK;
}

uint8_t rod_start(uint32_t start_mrpm, uint32_t end_mrpm, uint32_t ramp_ms, uint32_t max_ms) {
  if (running) return ROD_ERR_RUNNING;
  // ramp_ms <= 3.6e6 keeps DEN = 4.8e10 * ramp_ms and tick counts inside 64/32 bits
  if (end_mrpm < start_mrpm || ramp_ms == 0 || max_ms == 0 || ramp_ms > 3600000UL ||
      max_ms > 3600000UL)
    return ROD_ERR_ARGS;
  // at most one step per tick: end_rpm * spr / 60 < ROD_TICK_HZ
  if ((uint64_t)end_mrpm * cfg.steps_per_rev >= (uint64_t)60000UL * ROD_TICK_HZ)
    return ROD_ERR_TOO_FAST;
  uint64_t spr = cfg.steps_per_rev;
  cli();
  start_mrpm_ = start_mrpm;
  end_mrpm_ = end_mrpm;
  den = 48000000000ULL * ramp_ms;
  vel_num = spr * (40ULL * ramp_ms * start_mrpm + (uint64_t)(end_mrpm - start_mrpm));
  dvel_num = spr * 2ULL * (uint64_t)(end_mrpm - start_mrpm);
  vel_end = spr * 40ULL * ramp_ms * end_mrpm;
  pos_num = 0;
  gen_tick = 0;
  gen_done = false;
  step_head = step_tail = 0;
  late_steps = 0;
  tick = 0;
  steps = 0;
  ramp_ticks = ramp_ms * (ROD_TICK_HZ / 1000);
  max_ticks = max_ms * (ROD_TICK_HZ / 1000);
  slot_countdown = ROD_SLOT_TICKS;
  // reports fall half a slot after a slot boundary, so the two never share a tick
  report_countdown = ROD_REPORT_TICKS + ROD_SLOT_TICKS / 2;
  slot_steps[0] = 0;  // the t = 0 boundary
  slot_i = 1;
  slots_filled = 1;
  started_flag = report_flag = ended_flag = false;
  running = true;
  sei();
  return ROD_OK;
}

// Step k of the ramp goes out on the tick at whose end the exact angle has passed it.
void rod_service() {
  while (running && !gen_done) {
    uint8_t h = step_head;
    if ((uint8_t)((h + 1) & (STEP_Q - 1)) == step_tail) return;  // queue full
    // run the DDS until the next step (at most a few hundred ticks at the slowest speeds)
    for (;;) {
      if (gen_tick >= max_ticks) {
        gen_done = true;
        break;
      }
      pos_num += vel_num;
      gen_tick++;
      if (gen_tick < ramp_ticks)
        vel_num += dvel_num;
      else
        vel_num = vel_end;
      if (pos_num >= den) {
        pos_num -= den;
        step_q[h] = gen_tick;
        step_head = (uint8_t)((h + 1) & (STEP_Q - 1));
        break;
      }
    }
  }
}

uint16_t rod_late_steps() { return late_steps; }

void rod_stop(uint8_t reason) {
  cli();
  if (running) end_ramp(reason);
  sei();
}

bool rod_running() { return running; }

bool rod_take_started(uint64_t *t_us) {
  if (!started_flag) return false;
  cli();
  *t_us = started_us;
  started_flag = false;
  sei();
  return true;
}

bool rod_take_report(RodReport *r) {
  if (!report_flag) return false;
  cli();
  *r = report;
  report_flag = false;
  sei();
  return true;
}

bool rod_take_hit(RodHit *h) {
  if (hit_tail == hit_head) return false;
  *h = hitq[hit_tail];
  hit_tail = (uint8_t)((hit_tail + 1) & (HIT_Q - 1));
  return true;
}

bool rod_take_ended(uint64_t *t_us, uint32_t *s, uint8_t *reason) {
  if (!ended_flag) return false;
  cli();
  *t_us = ended_us;
  *s = ended_steps;
  *reason = ended_reason;
  ended_flag = false;
  sei();
  return true;
}
