// -O2 for the engine and its interrupts: input -> output latency is the budget here, not flash.
#pragma GCC optimize("O2")
#include "timebase.h"

#include <Arduino.h>
#include <avr/interrupt.h>
#include <avr/io.h>

volatile uint32_t timebase_overflows;


void timebase_begin() {
  uint8_t s = SREG;
  cli();
  TCCR1A = 0;
  TCCR1B = _BV(CS11);  // normal mode, prescaler 8
  TCNT1 = 0;
  timebase_overflows = 0;
  OCR1A = SAMPLE_PERIOD_US * TIMER_TICKS_PER_US;
  OCR1B = (SAMPLE_PERIOD_US - ADC_LEAD_US) * TIMER_TICKS_PER_US;
  TIFR1 = _BV(TOV1) | _BV(OCF1A) | _BV(OCF1B);
  TIMSK1 = _BV(TOIE1) | _BV(OCIE1A) | _BV(OCIE1B);
  SREG = s;
}

uint64_t timebase_now_us() {
  uint8_t s = SREG;
  cli();
  uint16_t lo = TCNT1;
  uint32_t hi = timebase_overflows;
  // An overflow after cli() is pending in TOV1 and not counted yet; a small `lo` means the read
  // came after that wrap.
  if ((TIFR1 & _BV(TOV1)) && lo < 0x8000) hi++;
  SREG = s;
  // ticks / 2 without a 64-bit shift: µs = hi * 32768 + lo / 2
  static_assert(TIMER_TICKS_PER_US == 2, "the clock assumes 16 MHz (0.5 µs timer ticks)");
  uint64_t us = (uint64_t)(hi >> 1) << 16;
  return us + ((uint32_t)(hi & 1) << 15) + (lo >> 1);
}

ISR(TIMER1_OVF_vect) { timebase_overflows++; }

ISR(TIMER1_COMPB_vect) {
  // The 16-bit compare value wraps together with the counter, so adding the period modulo 2^16
  // keeps the schedule exact whatever the interrupt latency.
  OCR1B += SAMPLE_PERIOD_US * TIMER_TICKS_PER_US;
  on_sample_start();
}

