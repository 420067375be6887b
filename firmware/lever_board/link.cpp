#include "link.h"

#include <Arduino.h>
#include <util/crc16.h>

#include "protocol.h"

LinkCounters link_counters;
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
#define TX_RING 64  // power of two
static uint8_t tx_ring[TX_RING];
static volatile uint8_t tx_head, tx_tail;

// Receive: the RX interrupt assembles frames (up to the 0x00 delimiter) straight into one of two
// buffers, so the main loop may take up to a whole frame time (1.3 ms for the longest) to handle
// the previous frame, however long a tick runs. With both buffers full, input is discarded up to
// the next delimiter (and counted).
static uint8_t rx_buf[2][MAX_FRAME];
static uint8_t rx_buf_len[2];
static uint8_t rx_w, rx_r, rx_len;           // buffer being written, next to read, bytes so far
static volatile uint8_t rx_ready;            // complete frames waiting (0..2)
static bool rx_discard;                      // drop bytes up to the next delimiter
static volatile uint8_t rx_isr_errors;       // folded into cobs_errors by the main loop

void link_begin(uint32_t baud) {
  // U2X: 16 MHz reaches 1 Mbaud exactly (UBRR = 1)
  UCSR0A = _BV(U2X0);
  UBRR0 = (uint16_t)(F_CPU / (8 * baud) - 1);
  UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
  UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
}

ISR(RX_VECT) {
  uint8_t b = UDR0;
  if (rx_discard) {
    if (b == 0) rx_discard = false;
    return;
  }
  if (b != 0) {
    if (rx_ready == 2 || rx_len == MAX_FRAME) {
      if (rx_isr_errors != 0xFF) rx_isr_errors++;  // no free buffer, or oversize
      rx_discard = true;
      rx_len = 0;
      return;
    }
    rx_buf[rx_w][rx_len++] = b;
    return;
  }
  if (rx_len == 0) return;  // extra delimiters are allowed
  rx_buf_len[rx_w] = rx_len;
  rx_len = 0;
  rx_w ^= 1;
  rx_ready++;
}

ISR(UDRE_VECT) {
  if (tx_head == tx_tail) {
    UCSR0B &= ~_BV(UDRIE0);
    return;
  }
  UDR0 = tx_ring[tx_tail];
  tx_tail = (tx_tail + 1) & (TX_RING - 1);
}

uint8_t link_tx_room() { return (TX_RING - 1) - ((tx_head - tx_tail) & (TX_RING - 1)); }
bool link_rx_pending() { return rx_ready != 0; }

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

static void handle_frame(uint8_t* frame, uint8_t len, PacketHandler handler) {
  int16_t n = cobs_decode(frame, len);
  if (n < 4) {
    sat_inc(link_counters.cobs_errors);  // bad stuffing or runt
    return;
  }
  uint16_t crc = get_u16(frame + n - 2);
  if (crc16(frame, n - 2) != crc) {
    sat_inc(link_counters.crc_errors);
    return;
  }
  uint8_t seq = frame[1];
  // GET_HELLO opens a host session: it sets the expected seq without counting loss
  if (rx_synced && frame[0] != CMD_GET_HELLO) {
    uint8_t d = seq - rx_expected_seq;
    for (uint8_t i = 0; i < d; i++) sat_inc(link_counters.lost);
  }
  rx_synced = true;
  rx_expected_seq = seq + 1;
  handler(frame[0], seq, frame + 2, (uint8_t)(n - 4));
}

void link_poll(PacketHandler handler) {
  if (rx_isr_errors) {
    cli();
    uint8_t e = rx_isr_errors;
    rx_isr_errors = 0;
    sei();
    while (e--) sat_inc(link_counters.cobs_errors);
  }
  // One frame per call, so that a flood of input cannot starve the transmit side.
  if (!rx_ready) return;
  handle_frame(rx_buf[rx_r], rx_buf_len[rx_r], handler);
  rx_r ^= 1;
  cli();
  rx_ready--;
  sei();
}

// One pass: COBS-encode type|seq|body|crc straight into the transmit ring behind tx_head, and
// publish the frame by moving tx_head only when it is complete, so the UDRE interrupt never sends
// a code byte that is not filled in yet. Packets are < 254 bytes, so there is no 0xFF block.
// A template so that the body access inlines (this runs for every packet: ~3 kHz under load).
static inline __attribute__((always_inline)) uint16_t crc_step(uint16_t crc, uint8_t b) {
  return _crc_xmodem_update(crc, b);  // avr-libc's asm: CCITT polynomial, MSB first
}

template <typename Get>
static inline __attribute__((always_inline)) void encode_frame(uint8_t type, uint8_t n, Get get) {
  if (n > MAX_BODY) return;
  while (link_tx_room() < link_wire_size(n)) {
    // main loop only: the UDRE interrupt makes room
  }
  uint8_t h = tx_head, code_pos = h, code = 1;
  h = (h + 1) & (TX_RING - 1);
  uint8_t seq = tx_seq++;
  uint16_t crc = crc_step(crc_step(0xFFFF, type), seq);
#define PUT(byte)                      \
  do {                                 \
    uint8_t b_ = (byte);               \
    if (b_ == 0) {                     \
      tx_ring[code_pos] = code;        \
      code_pos = h;                    \
      code = 1;                        \
    } else {                           \
      tx_ring[h] = b_;                 \
      code++;                          \
    }                                  \
    h = (h + 1) & (TX_RING - 1);       \
  } while (0)
  PUT(type);
  PUT(seq);
  for (uint8_t i = 0; i < n; i++) {
    uint8_t b = get(i);
    crc = crc_step(crc, b);
    PUT(b);
  }
  PUT((uint8_t)crc);
  PUT((uint8_t)(crc >> 8));
#undef PUT
  tx_ring[code_pos] = code;
  tx_ring[h] = 0;
  tx_head = (h + 1) & (TX_RING - 1);
  UCSR0B |= _BV(UDRIE0);
}

void link_send_from(uint8_t type, uint8_t n, BodyByte get) { encode_frame(type, n, get); }

void link_send(uint8_t type, const uint8_t* body, uint8_t n) {
  encode_frame(type, n, [body](uint8_t i) { return body[i]; });
}
