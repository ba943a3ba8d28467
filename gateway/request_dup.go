package gateway

// The fields of each object of a settlement or reversal body: a field
// repeated within one object is refused rather than letting the last one
// win. JSON parsers differ on which one wins, so the hospital's system
// and the gateway could read different bills; and a repeated "items"
// would add lines past every per-array limit (MaxItems, unique trace
// codes).
var (
	settleFields   = []string{"request_id", "person", "visit", "use_personal_account", "items"}
	personFields   = []string{"id", "insured_region"}
	visitFields    = []string{"type", "admitted_on", "discharged_on", "visit_date", "emergency", "birth_order", "diagnoses"}
	itemFields     = []string{"code", "unit_price", "quantity", "amount", "trace_codes"}
	reversalFields = []string{"request_id", "reason"}
)

// objectOnce is object, refusing (400 duplicate_field) a key of fields
// that appears twice; other keys are fn's (which refuses unknown ones).
// It does not allocate.
func (l *lexer) objectOnce(prefix string, fields []string, fn func(key []byte) error) error {
	var seen uint64
	return l.object(func(key []byte) error {
		for i, f := range fields {
			if string(key) != f {
				continue
			}
			if seen&(1<<i) != 0 {
				if err := l.skip(); err != nil {
					return err
				}
				return badRequest("duplicate_field", prefix+f, "%s%s appears twice", prefix, f)
			}
			seen |= 1 << i
			break
		}
		return fn(key)
	})
}

// nullField consumes a null value of key, one of fields, and reports
// whether it did: a field sent as null is absent, as JSON serializers that
// write every member send an optional one they have no value for. An
// unknown key's null is left to be refused as unknown.
func (l *lexer) nullField(fields []string, key []byte) bool {
	if l.peek() != 'n' {
		return false // not a null: no need to look the key up
	}
	for _, f := range fields {
		if string(key) == f {
			return l.null()
		}
	}
	return false
}
