// Device clock and the 1 kHz tick. Timer1 runs free at F_CPU/8 (0.5 µs ticks at 16 MHz) and is
// extended past its 16-bit wrap by an overflow count, so timestamps never wrap in practice
// (2^48 timer ticks = 4.5 years). Compare A schedules the lever samples exactly every 1000 µs,
// independent of interrupt latency: sample k is taken at t_k = (k + 1) * 1000 µs after boot.
#pragma once
#include <avr/interrupt.h>
#include <avr/io.h>
#include <stdint.h>

#define TIMER_TICKS_PER_US (F_CPU / 8000000UL)
#define SAMPLE_PERIOD_US 1000UL

void timebase_begin();
// Current device time in µs since boot. Safe from ISRs and from the main loop.
uint64_t timebase_now_us();
// Its low 32 bits, cheaply (no 64-bit arithmetic, inline): for stamps in ISRs.
static inline uint32_t timebase_now_us_lo();
static inline uint64_t sample_time_us(uint32_t k) {
  // 32x32 -> 64-bit product without avr-gcc's slow generic 64-bit multiply
  uint32_t n = k + 1;
  uint64_t hi = (uint64_t)((n >> 16) * SAMPLE_PERIOD_US) << 16;
  return hi + (uint32_t)((n & 0xFFFF) * SAMPLE_PERIOD_US);
}

// The lever's ADC conversion is started this long before each tick, so that its result is ready
// when the tick is due and the tick never waits for it (52 µs conversion + margin for latency).
#define ADC_LEAD_US 64

// Provided by the sketch, called with interrupts off from the compare-B ISR ADC_LEAD_US before
// each tick's time: start the lever conversion.
void on_sample_start();
// The sketch owns TIMER1_COMPA_vect, which fires at each tick's time (in the same translation
// unit as the engine, so that it inlines), and calls this first. The 16-bit compare value wraps
// with the counter, so adding the period modulo 2^16 keeps the schedule exact whatever the
// interrupt latency.
static inline void timebase_schedule_next_tick() { OCR1A += SAMPLE_PERIOD_US * TIMER_TICKS_PER_US; }

extern volatile uint32_t timebase_overflows;  // Timer1 overflows since boot

static inline uint32_t timebase_now_us_lo() {
  uint8_t s = SREG;
  cli();
  uint16_t lo = TCNT1;
  uint32_t hi = timebase_overflows;
  // an overflow after cli() is pending in TOV1 and not counted yet
  if ((TIFR1 & _BV(TOV1)) && lo < 0x8000) hi++;
  SREG = s;
  // µs = hi * 32768 + lo / 2, low 32 bits: (hi:lo) >> 1 with byte moves and one shift
  // (a variable or long shift is a loop on AVR; this runs in the lick interrupt)
  uint32_t r = (((uint32_t)(uint16_t)hi << 16) | lo) >> 1;
  if (hi & 0x10000UL) r |= 0x80000000UL;
  return r;
}
