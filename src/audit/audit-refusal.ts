/** Why relaying stops before it starts: the trail could not take the last record, or is nearly full. */
export type AuditRefusal = 'write-failed' | 'low-space';

/** The refusal in words, for the record of a refused transaction and for /readyz. */
export function auditRefusalText(refusal: AuditRefusal): string {
  return refusal === 'low-space' ? 'the audit trail filesystem is below audit.minFreeSpace' : 'the audit trail cannot be written';
}
