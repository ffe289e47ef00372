/**
 * A minimal, fast SMTP sink for the bench when Postfix's smtp-sink is not installed: it accepts
 * everything and keeps nothing. Commands may be pipelined; the body is scanned for the CRLF.CRLF
 * terminator across chunk boundaries without copying.
 *
 *   node bench/fast-sink.mjs PORT     (0 = any free port; prints "listening PORT" when ready)
 */
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const EHLO = '250-fast-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 104857600\r\n250 SMTPUTF8\r\n';
const END = Buffer.from('\r\n.\r\n');

/** Handles one client connection. */
function serve(socket) {
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  let inData = false;
  /** How many bytes of END matched at the end of the previous chunk (the terminator may be split). */
  let matched = 2; // the DATA body starts right after a CRLF
  let pending = '';
  let queued = 0;

  socket.write('220 fast-sink ESMTP\r\n');

  const command = (line) => {
    const verb = line.slice(0, 4).toUpperCase();
    if (verb === 'EHLO') return EHLO;
    if (verb === 'DATA') {
      inData = true;
      matched = 2;
      return '354 go ahead\r\n';
    }
    if (verb === 'QUIT') {
      socket.end('221 bye\r\n');
      return '';
    }
    return '250 ok\r\n';
  };

  socket.on('data', (chunk) => {
    let out = '';
    let pos = 0;
    while (pos < chunk.length) {
      if (inData) {
        // Continue a partial match of the terminator from the previous chunk.
        while (matched > 0 && matched < END.length && pos < chunk.length) {
          if (chunk[pos] === END[matched]) {
            matched += 1;
            pos += 1;
          } else {
            matched = 0;
            break;
          }
        }
        if (matched === END.length) {
          inData = false;
          matched = 0;
          queued += 1;
          out += `250 ok queued as S${queued}\r\n`;
          continue;
        }
        if (pos >= chunk.length) break;
        const at = chunk.indexOf(END, pos);
        if (at >= 0) {
          pos = at + END.length;
          inData = false;
          queued += 1;
          out += `250 ok queued as S${queued}\r\n`;
          continue;
        }
        // Remember how much of the terminator the chunk ends with.
        matched = 0;
        for (let k = Math.min(END.length - 1, chunk.length - pos); k > 0; k--) {
          if (chunk.subarray(chunk.length - k).equals(END.subarray(0, k))) {
            matched = k;
            break;
          }
        }
        break;
      }
      const eol = chunk.indexOf(10, pos);
      if (eol < 0) {
        pending += chunk.toString('latin1', pos);
        break;
      }
      const line = pending + chunk.toString('latin1', pos, eol).replace(/\r$/, '');
      pending = '';
      pos = eol + 1;
      out += command(line);
    }
    if (out && !socket.destroyed && socket.writable) socket.write(out);
  });
}

/** Starts the sink; resolves with { port, close() }. */
export function startFastSink(port = 0, host = '127.0.0.1') {
  const server = net.createServer(serve);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: 1024 }, () => {
      resolve({ port: server.address().port, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  startFastSink(Number(process.argv[2] ?? 0)).then(({ port }) => process.stdout.write(`listening ${port}\n`));
}
