// Rotarod core: exact linear-rpm step generation and debounced lane sensors, all on one
// 20 kHz Timer1 tick. No protocol here: rotarod.ino turns the flags and records below into
// packets.
#pragma once
#include <stdint.h>

#define ROD_TICK_HZ 20000UL
#define ROD_MAX_LANES 5
// Rod-speed reports every 50 ms (20 Hz, the protocol asks for >= 10 Hz).
#define ROD_REPORT_TICKS 1000U
// Measured rpm = steps over the last ROD_WINDOW_SLOTS * 10 ms (step counts are sampled every 10 ms).
#define ROD_SLOT_TICKS 200U
#define ROD_WINDOW_SLOTS 25

// Errors returned by rod_start (sent back in the NAK).
enum {
  ROD_OK = 0,
  ROD_ERR_ARGS = 1,      // end < start, zero ramp or cutoff
  ROD_ERR_TOO_FAST = 2,  // more than one step per tick: rpm * steps_per_rev >= 60 * tick rate
  ROD_ERR_RUNNING = 3,
};

struct RodConfig {
  uint16_t steps_per_rev;
  uint8_t n_lanes;
  uint16_t debounce_ms;
  uint8_t active_low_mask;  // bit i: lane i's fall sensor pulls low when tripped
  uint8_t passive_mask;     // bit i: lane i has a passive-rotation sensor
  uint8_t passive_active_low_mask;
};

// Speed is captured in the ISR as raw counts (steps over a window of ticks, the ramp tick) and
// converted to milli-rpm in the main loop: a 64-bit division would overrun the 50 us tick.
struct RodSpeed {
  uint32_t steps;         // total steps since the ramp started
  uint32_t window_steps;  // steps over the last window_ticks
  uint32_t window_ticks;
  uint32_t tick;  // ramp tick (50 us) of the capture
};

// A debounced sensor trip ready to send. Times are the onset edge, not the confirmation.
struct RodHit {
  uint8_t kind;  // 0 = fall, 1 = passive rotation
  uint8_t lane;
  uint64_t t_us;
  RodSpeed speed;  // at the onset
};

struct RodReport {
  uint64_t t_us;
  RodSpeed speed;
};

void rod_init();
uint64_t rod_now_us();  // device clock, us since boot (Timer1, never wraps in practice)
uint8_t rod_configure(const RodConfig *cfg);
uint8_t rod_start(uint32_t start_mrpm, uint32_t end_mrpm, uint32_t ramp_ms, uint32_t max_ms);
void rod_service();  // call from loop(): computes the next steps of the ramp
uint16_t rod_late_steps();     // steps that went out a tick late (the loop fell behind)
uint16_t rod_tick_overruns();  // ticks that started late because the previous one ran long
// Why a ramp ended (ROD_STOPPED's reason byte).
enum {
  ROD_STOP_CUTOFF = 0,       // max_ms reached
  ROD_STOP_HOST = 1,         // STOP_ROD or RESET_SAFE
  ROD_STOP_HOST_SILENT = 2,  // no host packet for host_timeout_ms (rotarod.ino)
};
void rod_stop(uint8_t reason);  // immediately: no further step pulse
bool rod_running();
uint32_t rod_measured_mrpm(const RodSpeed *s);
uint32_t rod_nominal_mrpm(uint32_t tick);
// The main loop polls these; each returns true once per thing to send.
bool rod_take_started(uint64_t *t_us);
bool rod_take_report(RodReport *r);
bool rod_take_hit(RodHit *h);
// reason: ROD_STOP_*
bool rod_take_ended(uint64_t *t_us, uint32_t *steps, uint8_t *reason);
