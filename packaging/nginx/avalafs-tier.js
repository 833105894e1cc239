// The key of the avalafs tier's cached listings (avalafs-tier.conf): a
// SHA-256 of the API key the node sent, so that only holders of the same
// key share a page, and the key itself is in no cache file.
import crypto from 'crypto';

function key_hash(r) {
    const key = r.headersIn['X-Avala-Api-Key'];

    if (!key)
        return '-';
    return crypto.createHash('sha256').update(key).digest('hex');
}

export default { key_hash };
