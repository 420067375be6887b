#include "link.h"

#include <Arduino.h>
#include <util/crc16.h>

#include "protocol.h"

LinkCounters link_counters;
static uint8_t rx_frame[MAX_FRAME];
static uint8_t rx_len;
static bool rx_overflow;
static uint8_t tx_seq;
static bool rx_synced;
static uint8_t rx_expected_seq;

// ---------------------------------------------------------------- UART0 driver
// Our own instead of Arduino's Serial: smaller buffers (an Uno has 2 KB of RAM) and no vtables.
#if defined(USART0_RX_vect)
#define RX_VECT USART0_RX_vect
#define UDRE_VECT USART0_UDRE_vect
#else
#define RX_VECT USART_RX_vect
#define UDRE_VECT USART_UDRE_vect
#endif
#define RX_RING 64  // powers of two; 64 B = 640 µs of input at 1 Mbaud between main-loop polls
#define TX_RING 64
static uint8_t rx_ring[RX_RING], tx_ring[TX_RING];
static volatile uint8_t rx_head, rx_tail, tx_head, tx_tail;
static volatile uint16_t rx_overruns;

void link_begin(uint32_t baud) {
  // U2X: 16 MHz reaches 1 Mbaud exactly (UBRR = 1)
  UCSR0A = _BV(U2X0);
  UBRR0 = (uint16_t)(F_CPU / (8 * baud) - 1);
  UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
  UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
}

ISR(RX_VECT) {
  uint8_t b = UDR0;
  uint8_t next = (rx_head + 1) & (RX_RING - 1);
  if (next == rx_tail) {
    if (rx_overruns != 0xFFFF) rx_overruns++;  // the frame then fails COBS/CRC and is counted
    return;
  }
  rx_ring[rx_head] = b;
  rx_head = next;
}

ISR(UDRE_VECT) {
  if (tx_head == tx_tail) {
    UCSR0B &= ~_BV(UDRIE0);
    return;
  }
  UDR0 = tx_ring[tx_tail];
  tx_tail = (tx_tail + 1) & (TX_RING - 1);
}

static inline bool rx_available() { return rx_head != rx_tail; }

static uint8_t rx_read() {
  uint8_t b = rx_ring[rx_tail];
  rx_tail = (rx_tail + 1) & (RX_RING - 1);
  return b;
}

static void tx_write(uint8_t b) {
  uint8_t next = (tx_head + 1) & (TX_RING - 1);
  while (next == tx_tail) {
    // full: the UDRE interrupt drains it (main loop only, interrupts are on)
  }
  tx_ring[tx_head] = b;
  tx_head = next;
  UCSR0B |= _BV(UDRIE0);
}

uint8_t link_tx_room() { return (TX_RING - 1) - ((tx_head - tx_tail) & (TX_RING - 1)); }
bool link_rx_pending() { return rx_available(); }

// Decode COBS in place; returns the decoded length or -1 on bad stuffing.
static int16_t cobs_decode(uint8_t* buf, uint8_t len) {
  uint8_t in = 0, out = 0;
  while (in < len) {
    uint8_t code = buf[in++];
    if (code == 0 || in + code - 1 > len) return -1;
    for (uint8_t i = 1; i < code; i++) buf[out++] = buf[in++];
    if (code != 0xFF && in < len) buf[out++] = 0;
  }
  return out;
}

static void handle_frame(PacketHandler handler) {
  if (rx_len == 0) return;  // extra delimiters are allowed
  int16_t n = cobs_decode(rx_frame, rx_len);
  if (n < 0) {
    sat_inc(link_counters.cobs_errors);
    return;
  }
  if (n < 4) {
    sat_inc(link_counters.cobs_errors);  // runt
    return;
  }
  uint16_t crc = get_u16(rx_frame + n - 2);
  if (crc16(rx_frame, n - 2) != crc) {
    sat_inc(link_counters.crc_errors);
    return;
  }
  uint8_t seq = rx_frame[1];
  if (rx_synced) {
    uint8_t d = seq - rx_expected_seq;
    for (uint8_t i = 0; i < d; i++) sat_inc(link_counters.lost);
  }
  rx_synced = true;
  rx_expected_seq = seq + 1;
  handler(rx_frame[0], seq, rx_frame + 2, (uint8_t)(n - 4));
}

void link_poll(PacketHandler handler) {
  // Bounded so that a flood of input cannot starve the transmit side of the main loop.
  for (uint8_t budget = 64; budget && rx_available(); budget--) {
    uint8_t b = rx_read();
    if (b == 0) {
      if (!rx_overflow) handle_frame(handler);
      rx_len = 0;
      rx_overflow = false;
    } else if (rx_overflow) {
      // discard up to the next delimiter
    } else if (rx_len == MAX_FRAME) {
      rx_overflow = true;
      sat_inc(link_counters.cobs_errors);  // oversize
    } else {
      rx_frame[rx_len++] = b;
    }
  }
}

// One pass: COBS-encode type|seq|body|crc straight into the transmit ring behind tx_head, and
// publish the frame by moving tx_head only when it is complete, so the UDRE interrupt never sends
// a code byte that is not filled in yet. Packets are < 254 bytes, so there is no 0xFF block.
void link_send_from(uint8_t type, uint8_t n, BodyByte get) {
  if (n > MAX_BODY) return;
  while (link_tx_room() < link_wire_size(n)) {
    // main loop only: the UDRE interrupt makes room
  }
  uint8_t h = tx_head, code_pos = h, code = 1;
  h = (h + 1) & (TX_RING - 1);
  uint16_t crc = 0xFFFF;
  uint8_t seq = tx_seq++;
  for (int16_t i = -2; i < (int16_t)n + 2; i++) {
    uint8_t b;
    if (i == -2)
      b = type;
    else if (i == -1)
      b = seq;
    else if (i < n)
      b = get((uint8_t)i);
    else
      b = i == n ? (uint8_t)crc : (uint8_t)(crc >> 8);
    if (i < n) crc = _crc_xmodem_update(crc, b);
    if (b == 0) {
      tx_ring[code_pos] = code;
      code_pos = h;
      code = 1;
    } else {
      tx_ring[h] = b;
      code++;
    }
    h = (h + 1) & (TX_RING - 1);
  }
  tx_ring[code_pos] = code;
  tx_ring[h] = 0;
  tx_head = (h + 1) & (TX_RING - 1);
  UCSR0B |= _BV(UDRIE0);
}

static const uint8_t* p_body;
static uint8_t body_byte(uint8_t i) { return p_body[i]; }

void link_send(uint8_t type, const uint8_t* body, uint8_t n) {
  p_body = body;
  link_send_from(type, n, body_byte);
}
