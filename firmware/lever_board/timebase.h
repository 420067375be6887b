// Device clock and the 1 kHz tick. Timer1 runs free at F_CPU/8 (0.5 µs ticks at 16 MHz) and is
// extended past its 16-bit wrap by an overflow count, so timestamps never wrap in practice
// (2^48 timer ticks = 4.5 years). Compare A schedules the lever samples exactly every 1000 µs,
// independent of interrupt latency: sample k is taken at t_k = (k + 1) * 1000 µs after boot.
#pragma once
#include <stdint.h>

#define TIMER_TICKS_PER_US (F_CPU / 8000000UL)
#define SAMPLE_PERIOD_US 1000UL

void timebase_begin();
// Current device time in µs since boot. Safe from ISRs and from the main loop.
uint64_t timebase_now_us();
static inline uint64_t sample_time_us(uint32_t k) {
  // 32x32 -> 64-bit product without avr-gcc's slow generic 64-bit multiply
  uint32_t n = k + 1;
  uint64_t hi = (uint64_t)((n >> 16) * SAMPLE_PERIOD_US) << 16;
  return hi + (uint32_t)((n & 0xFFFF) * SAMPLE_PERIOD_US);
}

// Provided by the sketch, called from the compare-A ISR with sample index k (interrupts off).
void on_sample_tick(uint32_t k);
