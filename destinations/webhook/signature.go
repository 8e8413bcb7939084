package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The headers of a Standard Webhooks delivery. net/http canonicalizes
// them (Webhook-Id); header names are case-insensitive.
const (
	// HeaderID carries the message ID, the same for every attempt and
	// every redelivery of a batch: the receiver's idempotency key.
	HeaderID = "webhook-id"
	// HeaderTimestamp carries the time of the attempt, in Unix seconds.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature carries one or more space-separated signatures,
	// each "v1,<base64 HMAC-SHA256>".
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts the serialized form of a signing secret:
// "whsec_" followed by the base64 (standard encoding) of the key bytes.
const SecretPrefix = "whsec_"

// signatureVersion is the Standard Webhooks identifier of HMAC-SHA256
// signatures.
const signatureVersion = "v1"

// secretBytes is the size of the keys NewSecret makes; the specification
// asks for 24 to 64 random bytes.
const secretBytes = 32

// NewSecret returns a new random signing secret, "whsec_" and the base64
// of 32 random bytes, to configure on both the sender and the receiver.
func NewSecret() (string, error) {
	key := make([]byte, secretBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("webhook: cannot read random bytes for a secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// parseSecret decodes a signing secret: "whsec_<base64>", or the base64
// alone, as the specification's reference libraries accept it.
func parseSecret(secret string) ([]byte, error) {
	s := strings.TrimSpace(secret)
	s = strings.TrimPrefix(s, SecretPrefix)
	if s == "" {
		return nil, fmt.Errorf("%w: it is empty; use the whsec_<base64> secret shared with the other side (NewSecret makes one)", ErrInvalidSecret)
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: the part after %q is not standard base64: %w", ErrInvalidSecret, SecretPrefix, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: it decodes to no bytes", ErrInvalidSecret)
	}
	return key, nil
}

// parseSecrets decodes each secret; the error names the one that is wrong
// by its position (never by its value).
func parseSecrets(field string, secrets []string) ([][]byte, error) {
	keys := make([][]byte, 0, len(secrets))
	for i, s := range secrets {
		k, err := parseSecret(s)
		if err != nil {
			if len(secrets) == 1 {
				return nil, fmt.Errorf("webhook: %s: %w", field, err)
			}
			return nil, fmt.Errorf("webhook: %s[%d]: %w", field, i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// mac is HMAC-SHA256 under key of "id.timestamp.body", the content the
// specification signs.
func mac(key []byte, id string, timestamp int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, timestamp, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// signature is the header form of one key's signature: "v1,<base64>".
func signature(key []byte, id string, timestamp int64, body []byte) string {
	return signatureVersion + "," + base64.StdEncoding.EncodeToString(mac(key, id, timestamp, body))
}

// signatures is the webhook-signature header value: one signature per
// key, space-separated, in the order of the keys.
func signatures(keys [][]byte, id string, timestamp int64, body []byte) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(signature(k, id, timestamp, body))
	}
	return b.String()
}

// Sign returns the Standard Webhooks signature of a message, the value of
// the webhook-signature header: "v1," and the base64 of HMAC-SHA256, keyed
// with the secret's decoded bytes, over "id.timestamp.body" (timestamp in
// Unix seconds). The secret is "whsec_<base64>" (the base64 alone is
// accepted too). The sender signs each attempt with it; Verify computes
// the same on the receiving side. To sign with several secrets during a
// rotation, join their signatures with a space.
func Sign(secret, id string, timestamp time.Time, body []byte) (string, error) {
	key, err := parseSecret(secret)
	if err != nil {
		return "", fmt.Errorf("webhook: Sign: %w", err)
	}
	return signature(key, id, timestamp.Unix(), body), nil
}
