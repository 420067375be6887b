// Per-trial state machine (docs/state_machine.md): board limits, blob layout, validation, and the
// engine: 1 kHz ticks and digital input edges. The engine runs in interrupt context (one step at
// a time, in time order: board.cpp); the main loop talks to it only through the functions below,
// which are safe to call with interrupts enabled.
#pragma once
#include <stdint.h>

#if defined(__AVR_ATmega2560__)
#define BOARD_KIND 2
#define MAX_STATES 32
#define MAX_TRANSITIONS 128
#else
#define BOARD_KIND 1
#define MAX_STATES 16
#define MAX_TRANSITIONS 48
#endif
#define MAX_GTIMERS 4
#define MAX_MACHINE_BYTES (32 + 18 * MAX_STATES + 2 * MAX_TRANSITIONS)
#define VALVE_CAP_HARD_MS 10000

// Event codes (docs/state_machine.md section 8)
enum : uint8_t {
  EV_LEVER_UP = 0x01,
  EV_LEVER_DOWN = 0x02,
  EV_LEVER_REST = 0x03,
  EV_LEVER_UNREST = 0x04,
  EV_LEVER_OVER = 0x05,
  EV_LICK_ON = 0x06,
  EV_LICK_OFF = 0x07,
  EV_TUP = 0x08,
  EV_GTIMER0 = 0x10,
  EV_SOFT0 = 0x18,
  EV_TRIAL_START = 0x20,
  EV_TRIAL_END = 0x21,
  EV_STATE_ENTER = 0x22,
  EV_VALVE_ON = 0x28,
  EV_VALVE_OFF = 0x29,
  EV_TONE_ON = 0x2A,
  EV_TONE_OFF = 0x2B,
  EV_TTL = 0x2C,
  EV_TRIAL_CODE = 0x2D,
  EV_HOST_TIMEOUT = 0x30,
  EV_HOST_RESUMED = 0x31,
  EV_START_DROPPED = 0x32,
};

struct Event {
  uint32_t t_us_lo;  // low 32 bits of the board time (an event is sent long before 71 min pass)
  uint8_t code, arg;
  int32_t value;
};

// Host requests applied at the next tick, in arrival order (docs/state_machine.md section 6).
enum : uint8_t { HREQ_ABORT, HREQ_RESET_SAFE, HREQ_SOFT, HREQ_VALVE, HREQ_TONE, HREQ_TTL };

// ---- called from the main loop
void engine_begin();
// Load protocol (LOAD_BEGIN/CHUNK/COMMIT): return 0 on success or a NAK code with *detail set.
uint8_t engine_load_begin(uint16_t total_len, uint16_t blob_crc, uint16_t* detail);
uint8_t engine_load_chunk(uint16_t offset, const uint8_t* data, uint8_t n, uint16_t* detail);
uint8_t engine_load_commit(uint16_t* detail);
uint8_t engine_start(uint32_t trial_num);
void engine_stop_queued();
// Queue a host request for the next tick; false if the queue is full.
bool engine_request(uint8_t kind, uint16_t a, uint16_t b);
void engine_host_seen();  // any valid host packet
void engine_set_config(uint16_t max_valve_ms, uint16_t host_timeout_ms);
uint16_t engine_max_valve_ms();
bool engine_pop_event(Event* e);
uint8_t engine_status();  // HEARTBEAT status bits
uint32_t engine_trial_num();
uint8_t engine_state();
// Validation (also used by tests through LOAD_COMMIT): 0 or NAK code with *detail.
uint8_t machine_validate(const uint8_t* b, uint16_t len, uint16_t max_valve_ms, uint16_t* detail);

// ---- called from the engine context (interrupts enabled, never nested), in time order
// One tick: x = lever sample (raw counts), t_us_lo = the tick's time (µs, low 32 bits).
void engine_tick(uint32_t k, int16_t x, uint32_t t_us_lo);
// The lick input is at `level` since board time t_us_lo (docs/state_machine.md section 4a);
// x_last = the last tick's lever sample (a trial that starts at the edge sets its detectors).
void engine_edge(uint8_t level, uint32_t t_us_lo, int16_t x_last);
// Drive the output pins that engine_edge(level, ...) will set, ahead of it: only with
// interrupts off, when that edge is the engine's very next step (nothing else can change the
// state before it). Latency only: engine_edge() writes the same levels again.
void engine_edge_pins(uint8_t level);

// ---- provided by the sketch (output pins)
void out_valve(bool on);
void out_tone(uint16_t freq_hz);  // 0 = off
void out_ttl(uint8_t value);
void out_trial_code(bool level);
