// The lever board's main code (the sketch's .ino only calls board_setup/board_loop, so the
// Arduino IDE compiles this file as plain C++ without generating prototypes).
// -O2: the output functions run in the engine's interrupts (latency over flash).
#pragma GCC optimize("O2")
#include <Arduino.h>
#include <avr/eeprom.h>
#include <avr/sleep.h>

#include "link.h"
#include "machine.h"
#include "engine_context.h"
#include "protocol.h"
#include "timebase.h"

#define FW_MAJOR 1
#define FW_MINOR 0
#define FW_PATCH 0
#define FW_NAME "lever_board"
#define BAUD 1000000UL

// Pins (Arduino numbering, same on Uno and Mega).
const uint8_t PIN_LEVER_ADC_CH = 0;  // A0
const uint8_t PIN_FRAME = 2;         // interrupt-capable (INT0 on Uno, INT4 on Mega)
const uint8_t PIN_LICK = 3;
const uint8_t PIN_VALVE = 4;
const uint8_t PIN_TTL[4] = {5, 6, 7, 8};  // TTL0 = ScanImage start trigger, TTL1 = next file
const uint8_t PIN_TONE = 9;
const uint8_t PIN_TRIAL_CODE = 10;

// ---------------------------------------------------------------- fast pin access
struct FastPin {
  volatile uint8_t* reg;
  uint8_t mask;
};
static FastPin fp_valve, fp_code, fp_ttl[4];

static FastPin out_pin(uint8_t pin) {
  pinMode(pin, OUTPUT);
  digitalWrite(pin, LOW);
  return FastPin{portOutputRegister(digitalPinToPort(pin)), digitalPinToBitMask(pin)};
}
static inline void fp_write(const FastPin& p, bool v) {
  uint8_t s = SREG;
  cli();
  if (v)
    *p.reg |= p.mask;
  else
    *p.reg &= ~p.mask;
  SREG = s;
}

void out_valve(bool on) { fp_write(fp_valve, on); }
// Square wave on PIN_TONE from Timer2 in CTC mode, toggled by its compare interrupt. Our own
// instead of Arduino's tone(), which spends a long time in divisions when it starts.
static FastPin fp_tone;
static const uint8_t T2_SHIFT[] PROGMEM = {0, 3, 5, 6, 7, 8, 10};  // prescalers 1, 8, 32 .. 1024

void out_tone(uint16_t freq_hz) {
  TIMSK2 &= ~_BV(OCIE2A);
  fp_write(fp_tone, false);
  if (!freq_hz) return;
  uint32_t half_period = (F_CPU / 2) / freq_hz;  // CPU cycles per half wave
  uint8_t cs = 0;
  while (cs < 6 && (half_period >> pgm_read_byte(&T2_SHIFT[cs])) > 256) cs++;
  TCCR2A = _BV(WGM21);
  TCCR2B = cs + 1;
  OCR2A = (uint8_t)((half_period >> pgm_read_byte(&T2_SHIFT[cs])) - 1);
  TCNT2 = 0;
  TIFR2 = _BV(OCF2A);
  TIMSK2 |= _BV(OCIE2A);
}

ISR(TIMER2_COMPA_vect) { *fp_tone.reg ^= fp_tone.mask; }
void out_ttl(uint8_t value) {
  // one critical section for the four pins (the tone interrupt writes PORTB too)
  uint8_t s = SREG;
  cli();
  uint8_t bit = 1;
  for (uint8_t i = 0; i < 4; i++, bit <<= 1) {
    if (value & bit)
      *fp_ttl[i].reg |= fp_ttl[i].mask;
    else
      *fp_ttl[i].reg &= ~fp_ttl[i].mask;
  }
  SREG = s;
}
void out_trial_code(bool level) { fp_write(fp_code, level); }

// ---------------------------------------------------------------- tick samples
static volatile uint16_t stream_dropped;

// lever stream ring: the engine context owns lv_head, the main loop owns lv_tail/lv_tail_k
#define LV_RING 64
static int16_t lv_ring[LV_RING];
static volatile uint8_t lv_head;
static uint8_t lv_tail;
static uint32_t lv_tail_k;
static volatile bool lv_overrun;
static volatile uint8_t decimation = 1;
static uint8_t lv_skip;  // ticks to skip before the next streamed one (k % decimation == 0)
static uint8_t batch_n = 10;

// last 16 samples, for ZERO_LEVER
static int16_t zero_buf[16];
static uint8_t zero_idx, zero_n;

static inline uint32_t last_tick() { return engine_last_tick(); }

void board_on_sample(uint32_t k, int16_t x) {
  (void)k;
  zero_buf[zero_idx] = x;
  zero_idx = (zero_idx + 1) & 15;
  if (zero_n < 16) zero_n++;
  // a countdown, not k % d: a 32-bit division costs ~40 µs, and a lick edge may wait for us
  uint8_t d = decimation;
  if (!d) return;
  if (lv_skip) {
    lv_skip--;
    return;
  }
  lv_skip = d - 1;
  if (!lv_overrun) {
    uint8_t next = (lv_head + 1) & (LV_RING - 1);
    if (next == lv_tail) {
      lv_overrun = true;
    } else {
      lv_ring[lv_head] = x;
      lv_head = next;
    }
  }
}

// pin 2's external-interrupt vector (our own: see engine_context.cpp)
#if defined(__AVR_ATmega2560__)
#define FRAME_VECT INT4_vect
#else
#define FRAME_VECT INT0_vect
#endif

// ---------------------------------------------------------------- frame clock
#if BOARD_KIND == 1
#define FR_RING 4  // 4 ms of slack at a 1 kHz frame clock; an Uno has 2 KB of RAM
#else
#define FR_RING 32
#endif
struct Frame {
  uint32_t count;
  uint32_t t_us_lo;  // the main loop restores the high bits (a frame waits far less than 71 min)
};
static Frame frames[FR_RING];
static volatile uint8_t fr_head, fr_tail;
static volatile uint32_t frame_count;

ISR(FRAME_VECT) {
  uint64_t t = timebase_now_us();
  frame_count++;
  uint8_t next = (fr_head + 1) & (FR_RING - 1);
  if (next == fr_tail) {
    if (stream_dropped != 0xFFFF) stream_dropped++;
    return;
  }
  frames[fr_head].count = frame_count;
  frames[fr_head].t_us_lo = (uint32_t)t;
  fr_head = next;
}

// ---------------------------------------------------------------- replies
static void send_ack(uint8_t seq, uint8_t type) {
  uint8_t b[2] = {seq, type};
  link_send(PKT_ACK, b, 2);
}

static void send_nak(uint8_t seq, uint8_t type, uint8_t err, uint16_t detail) {
  uint8_t b[5] = {seq, type, err, 0, 0};
  put_u16(b + 3, detail);
  link_send(PKT_NAK, b, 5);
}

static void send_hello() {
  uint8_t b[22 + sizeof(FW_NAME) - 1];
  b[0] = PROTOCOL_VERSION;
  b[1] = FW_MAJOR;
  b[2] = FW_MINOR;
  b[3] = FW_PATCH;
  b[4] = BOARD_KIND;
  b[5] = 0;
  uint32_t uid = eeprom_read_dword((const uint32_t*)0);
  put_u32(b + 6, uid == 0xFFFFFFFFUL ? 0 : uid);
  b[10] = 1;
  b[11] = 4;
  b[12] = 2;
  b[13] = MAX_STATES;
  b[14] = MAX_TRANSITIONS;
  b[15] = MAX_GTIMERS;
  put_u16(b + 16, MAX_MACHINE_BYTES);
  put_u16(b + 18, SAMPLE_PERIOD_US);
  b[20] = MAX_PACKET;
  b[21] = 10;
  memcpy(b + 22, FW_NAME, sizeof(FW_NAME) - 1);
  link_send(PKT_HELLO, b, sizeof b);
}

static void send_lever_batch(uint8_t n);

// Expected body length per command type: -1 unknown type, 0xFF variable (LOAD_CHUNK).
static int16_t expected_len(uint8_t type) {
  if (type >= CMD_LOAD_BEGIN && type <= CMD_SOFT_EVENT) {
    static const uint8_t len[] PROGMEM = {4, 0xFF, 0, 4, 0, 0, 1};
    return pgm_read_byte(&len[type - CMD_LOAD_BEGIN]);
  }
  if (type >= CMD_GET_HELLO && type <= CMD_ZERO_LEVER) {
    static const uint8_t len[] PROGMEM = {1, 0, 4, 2, 0, 0};
    return pgm_read_byte(&len[type - CMD_GET_HELLO]);
  }
  if (type == CMD_OPEN_VALVE || type == CMD_SET_TTL) return 2;
  if (type == CMD_PLAY_TONE) return 4;
  return -1;
}

static void handle_packet(uint8_t type, uint8_t seq, const uint8_t* b, uint8_t n) {
  engine_host_seen();
  int16_t want = expected_len(type);
  if (want < 0) return send_nak(seq, type, ERR_UNKNOWN_TYPE, 0);
  if (want == 0xFF ? (n < 3 || n > 122) : n != want)
    return send_nak(seq, type, ERR_BAD_LENGTH, want == 0xFF ? 3 : want);
  uint8_t err = 0;
  uint16_t detail = 0;
  switch (type) {
    case CMD_GET_HELLO:
      if (b[0] != PROTOCOL_VERSION) return send_nak(seq, type, ERR_VERSION, PROTOCOL_VERSION);
      send_hello();
      break;
    case CMD_HOST_HEARTBEAT: break;
    case CMD_SET_CONFIG: {
      uint16_t cap = get_u16(b), timeout = get_u16(b + 2);
      if (cap < 1 || cap > VALVE_CAP_HARD_MS) return send_nak(seq, type, ERR_BAD_VALUE, 0);
      if (timeout != 0 && (timeout < 100 || timeout > 60000))
        return send_nak(seq, type, ERR_BAD_VALUE, 2);
      engine_set_config(cap, timeout);
      break;
    }
    case CMD_SET_STREAM:
      if (b[0] > 100) return send_nak(seq, type, ERR_BAD_VALUE, 0);
      if (b[1] < 1 || b[1] > 50) return send_nak(seq, type, ERR_BAD_VALUE, 1);
      // flush what was sampled under the old settings, then restart the ring
      while (true) {
        uint8_t avail = (lv_head - lv_tail) & (LV_RING - 1);
        if (!avail) break;
        send_lever_batch(avail > batch_n ? batch_n : avail);
      }
      cli();
      decimation = b[0];
      batch_n = b[1];
      lv_tail = lv_head = 0;
      lv_overrun = false;
      lv_tail_k = b[0] ? (last_tick() / b[0] + 1) * b[0] : 0;
      lv_skip = b[0] ? lv_tail_k - last_tick() - 1 : 0;
      sei();
      break;
    case CMD_RESET_SAFE:
      if (!engine_request(HREQ_RESET_SAFE, 0, 0)) return send_nak(seq, type, ERR_BUSY, 0);
      break;
    case CMD_ZERO_LEVER: {
      int32_t sum = 0;
      cli();
      uint8_t cnt = zero_n;
      for (uint8_t i = 0; i < cnt; i++) sum += zero_buf[i];
      sei();
      uint8_t z[3];
      put_u16(z, cnt ? (int16_t)((sum + cnt / 2) / cnt) : 0);
      z[2] = cnt;
      link_send(PKT_LEVER_ZERO, z, 3);
      break;
    }
    case CMD_LOAD_BEGIN: err = engine_load_begin(get_u16(b), get_u16(b + 2), &detail); break;
    case CMD_LOAD_CHUNK: err = engine_load_chunk(get_u16(b), b + 2, n - 2, &detail); break;
    case CMD_LOAD_COMMIT: err = engine_load_commit(&detail); break;
    case CMD_START_TRIAL: err = engine_start(get_u32(b)); break;
    case CMD_STOP_TRIAL: engine_stop_queued(); break;
    case CMD_ABORT_TRIAL:
      if (!engine_request(HREQ_ABORT, 0, 0)) err = ERR_BUSY;
      break;
    case CMD_SOFT_EVENT:
      if (b[0] > 7) return send_nak(seq, type, ERR_BAD_VALUE, 0);
      if (!engine_request(HREQ_SOFT, b[0], 0)) err = ERR_BUSY;
      break;
    case CMD_OPEN_VALVE: {
      uint16_t ms = get_u16(b);
      if (ms > engine_max_valve_ms())
        return send_nak(seq, type, ERR_VALVE_CAP, engine_max_valve_ms());
      if (!engine_request(HREQ_VALVE, ms, 0)) err = ERR_BUSY;
      break;
    }
    case CMD_PLAY_TONE: {
      uint16_t f = get_u16(b), ms = get_u16(b + 2);
      if (ms && (f < 31 || f > 20000)) return send_nak(seq, type, ERR_BAD_VALUE, 0);
      if (!engine_request(HREQ_TONE, f, ms)) err = ERR_BUSY;
      break;
    }
    case CMD_SET_TTL:
      if (b[0] & 0xF0) return send_nak(seq, type, ERR_BAD_VALUE, 0);
      if (!engine_request(HREQ_TTL, b[0], b[1])) err = ERR_BUSY;
      break;
  }
  if (err)
    send_nak(seq, type, err, detail);
  else
    send_ack(seq, type);
}

// ---------------------------------------------------------------- outgoing streams
static uint8_t lever_hdr[15];

static uint8_t lever_body_byte(uint8_t i) {
  if (i < 15) return lever_hdr[i];
  i -= 15;
  uint16_t v = (uint16_t)lv_ring[(lv_tail + i / 2) & (LV_RING - 1)];
  return (i & 1) ? v >> 8 : v;
}

static void send_lever_batch(uint8_t n) {
  put_u32(lever_hdr, lv_tail_k);
  put_u64(lever_hdr + 4, sample_time_us(lv_tail_k));
  put_u16(lever_hdr + 12, (uint16_t)decimation * SAMPLE_PERIOD_US);
  lever_hdr[14] = n;
  link_send_from(PKT_LEVER, 15 + 2 * n, lever_body_byte);
  lv_tail = (lv_tail + n) & (LV_RING - 1);
  lv_tail_k += (uint32_t)n * decimation;
}

static uint32_t next_heartbeat_k = 99;  // tick 99 is at t = 100 ms

static void send_heartbeat(uint64_t now) {
  uint8_t b[28];
  put_u64(b, now);
  put_u16(b + 8, link_counters.crc_errors);
  put_u16(b + 10, link_counters.cobs_errors);
  put_u16(b + 12, link_counters.lost);
  extern uint16_t engine_events_dropped;
  uint32_t dropped = (uint32_t)link_counters.tx_dropped + engine_events_dropped + stream_dropped +
                     engine_edges_dropped();
  put_u16(b + 14, dropped > 0xFFFF ? 0xFFFF : dropped);
  put_u16(b + 16, engine_tick_overruns());
  b[18] = engine_status();
  put_u32(b + 19, engine_trial_num());
  b[23] = engine_state();
  cli();
  uint32_t fc = frame_count;
  sei();
  put_u32(b + 24, fc);
  link_send(PKT_HEARTBEAT, b, sizeof b);
}

// Send at most one packet per call, and only when it fits the UART buffer, so the main loop keeps
// reading input; events first (they are the trail), then frames, then the lever stream.
static bool pump_output() {
  uint8_t room = link_tx_room();
  Event e;
  if (room >= link_wire_size(14) && engine_pop_event(&e)) {
    uint64_t now = timebase_now_us();
    uint8_t b[14];
    put_u64(b, now - (uint32_t)((uint32_t)now - e.t_us_lo));
    b[8] = e.code;
    b[9] = e.arg;
    put_u32(b + 10, (uint32_t)e.value);
    link_send(PKT_EVENT, b, 14);
    return true;
  }
  if (room >= link_wire_size(12) && fr_tail != fr_head) {
    uint64_t now = timebase_now_us();
    uint8_t b[12];
    put_u32(b, frames[fr_tail].count);
    put_u64(b + 4, now - (uint32_t)((uint32_t)now - frames[fr_tail].t_us_lo));
    fr_tail = (fr_tail + 1) & (FR_RING - 1);
    link_send(PKT_FRAME, b, 12);
    return true;
  }
  if (lv_overrun) {
    cli();
    lv_tail = lv_head = 0;
    lv_tail_k = decimation ? (last_tick() / decimation + 1) * decimation : 0;
    lv_skip = decimation ? lv_tail_k - last_tick() - 1 : 0;
    lv_overrun = false;
    if (stream_dropped != 0xFFFF) stream_dropped++;
    sei();
  }
  uint8_t avail = (lv_head - lv_tail) & (LV_RING - 1);
  if (avail >= batch_n && room >= link_wire_size(15 + 2 * batch_n)) {
    send_lever_batch(batch_n);
    return true;
  }
  return false;
}

void board_setup() {
  fp_valve = out_pin(PIN_VALVE);
  fp_code = out_pin(PIN_TRIAL_CODE);
  for (uint8_t i = 0; i < 4; i++) fp_ttl[i] = out_pin(PIN_TTL[i]);
  fp_tone = out_pin(PIN_TONE);
  pinMode(PIN_LICK, INPUT);
  pinMode(PIN_FRAME, INPUT);
  engine_begin();
  link_begin(BAUD);

  // ADC: AVcc reference, channel A0, clock F_CPU/64 (250 kHz, 52 µs per conversion), started by
  // the timebase ADC_LEAD_US before each tick and read by the tick (no interrupt).
  ADMUX = _BV(REFS0) | (PIN_LEVER_ADC_CH & 7);
#if defined(ADCSRB) && defined(MUX5)
  ADCSRB &= ~_BV(MUX5);
#endif
  ADCSRA = _BV(ADEN) | _BV(ADPS2) | _BV(ADPS1);

  // frame clock: rising edge
#if defined(__AVR_ATmega2560__)
  EICRB = (EICRB & ~(_BV(ISC41) | _BV(ISC40))) | _BV(ISC41) | _BV(ISC40);
  EIFR = _BV(INTF4);
  EIMSK |= _BV(INT4);
#else
  EICRA = (EICRA & ~(_BV(ISC01) | _BV(ISC00))) | _BV(ISC01) | _BV(ISC00);
  EIFR = _BV(INTF0);
  EIMSK |= _BV(INT0);
#endif
  set_sleep_mode(SLEEP_MODE_IDLE);
  send_hello();
  timebase_begin();
  // lick edges from the pin's external interrupt, stamped in it (engine_context.cpp)
  engine_context_begin(portInputRegister(digitalPinToPort(PIN_LICK)),
                       digitalPinToBitMask(PIN_LICK));
}

void board_loop() {
  link_poll(handle_packet);
  bool sent = false;
  while (pump_output()) sent = true;
  cli();
  uint32_t k_now = last_tick();  // 32-bit: read with interrupts off
  sei();
  if ((int32_t)(k_now - next_heartbeat_k) >= 0 && link_tx_room() >= link_wire_size(28)) {
    next_heartbeat_k += 100;
    send_heartbeat(timebase_now_us());
    sent = true;
  }
  // Idle sleep until the next interrupt (tick, UART byte in or out, frame edge). `sei` runs the
  // next instruction before any pending interrupt, so an interrupt between the check and
  // `sleep` still wakes us. It saves power, and it lets simavr skip idle cycles.
  cli();
  if (!sent && !link_rx_pending()) {
    sleep_enable();
    sei();
    sleep_cpu();
    sleep_disable();
  }
  sei();
}
