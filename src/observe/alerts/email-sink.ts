import { readFileSync } from 'node:fs';
import { createTransport } from 'nodemailer';
import type { EmailSinkConfig } from '../../config/types.js';
import type { AlertSink } from './delivery-queue.js';
import { emailSubject, emailText, type AlertNotification } from './notification.js';

/**
 * Mails the notice through the sink's own SMTP server with nodemailer, one connection per notice.
 * Never through mailtrail's listeners or upstream pools: an alert about a failing upstream must not
 * depend on that upstream (the alert engine also skips an email sink whose server is the upstream
 * an alert is about). nodemailer honours the abort signal, closing the connection on timeout.
 */
export class EmailSink implements AlertSink {
  readonly name: string;
  /** The SMTP server, to tell whether it is the upstream an alert is about. */
  readonly server: { readonly host: string; readonly port: number };
  #config: EmailSinkConfig;
  #transport: ReturnType<typeof createTransport>;

  constructor(config: EmailSinkConfig, ehloName: string, timeoutMs: number) {
    this.name = config.name;
    this.server = { host: config.smtp.host, port: config.smtp.port };
    this.#config = config;
    const { smtp } = config;
    this.#transport = createTransport({
      host: smtp.host,
      port: smtp.port,
      secure: smtp.implicitTls,
      requireTLS: !smtp.implicitTls && smtp.tls.mode === 'required',
      ignoreTLS: !smtp.implicitTls && smtp.tls.mode === 'none',
      ...(smtp.auth ? { auth: { user: smtp.auth.user, pass: smtp.auth.pass } } : {}),
      name: ehloName,
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
      allowInternalNetworkInterfaces: true,
      logger: false,
      debug: false,
      tls: {
        rejectUnauthorized: smtp.tls.verify,
        minVersion: 'TLSv1.2',
        ...(smtp.tls.ca ? { ca: readFileSync(smtp.tls.ca) } : {}),
      },
    });
  }

  async send(notification: AlertNotification, signal: AbortSignal): Promise<void> {
    await this.#transport.sendMail({
      from: this.#config.from,
      to: [...this.#config.to],
      subject: emailSubject(notification),
      text: emailText(notification),
      headers: { 'X-Mailtrail-Alert': notification.state, 'X-Mailtrail-Delivery': notification.id },
      signal,
    });
  }

  close(): void {
    this.#transport.close();
  }
}
