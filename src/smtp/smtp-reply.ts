/** An SMTP reply with the enhanced status code (RFC 3463) parsed out of the text. */
export interface SmtpReply {
  readonly code: number;
  readonly enhanced: string | null;
  /** The reply text without the code and the enhanced code; multi-line replies joined with "\n". */
  readonly text: string;
}
