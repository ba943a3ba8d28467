package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/engine/cases"
	"medgate/ledger"
)

// TestR5NoPolicyBeforeFirstVersionNamesTheDate: a bill dated before the
// first version of its insured region was 422 no_policy naming the field
// person.insured_region, as if the region had no policy at all: the
// hospital could not see that the date was the cause. It names the date
// field, the region's first version and its effective date; a region
// with no version at all still names the region.
func TestR5NoPolicyBeforeFirstVersionNamesTheDate(t *testing.T) {
	h := newHarness(t, refWorld(t, map[string][]string{"371600": {empActive}, "152500": {strings.Replace(empActive, "EMP1", "EMP2", 1)}}))
	for _, tc := range []struct {
		name, body, field string
		says              []string
	}{
		{"outpatient", string(settleBody("R5-NP1", "EMP1", "371600", `{"type":"chronic","visit_date":"2022-06-01"}`, oneLine)),
			"visit.visit_date", []string{"2022-06-01", "v2023", "2023-01-01"}},
		{"inpatient", string(settleBody("R5-NP2", "EMP1", "371600", `{"type":"inpatient","admitted_on":"2022-12-20","discharged_on":"2022-12-31"}`, oneLine)),
			"visit.discharged_on", []string{"2022-12-31", "v2023", "2023-01-01"}},
	} {
		for _, path := range []string{"/v1/settlements", "/v1/settlements/quote"} {
			head := h.head()
			status, out := h.do("POST", path, "tok-H3716020001", []byte(tc.body))
			a := decodeAnswer(t, out)
			if status != 422 || a.Error == nil || a.Error.Code != "no_policy" || a.Error.Field != tc.field {
				t.Errorf("%s %s: %d %s; want 422 no_policy naming %s", tc.name, path, status, out, tc.field)
				continue
			}
			for _, s := range tc.says {
				if !strings.Contains(a.Error.Message, s) {
					t.Errorf("%s %s: message %q does not say %s", tc.name, path, a.Error.Message, s)
				}
			}
			if h.head() != head {
				t.Errorf("%s %s: the ledger moved", tc.name, path)
			}
		}
	}
	// A region without any version: the region is the cause.
	h.policies.Remove("152500", "v1")
	status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", settleBody("R5-NP3", "EMP2", "152500", chronicVisit, oneLine))
	if a := decodeAnswer(t, out); status != 422 || a.Error == nil || a.Error.Code != "no_policy" || a.Error.Field != "person.insured_region" {
		t.Errorf("region without a version: %d %s; want 422 no_policy naming person.insured_region", status, out)
	}
}

// TestR5VersionSupersededByTheDateReleasesItsInstances: an upload
// releases the idle instances of the versions it leaves out of force
// today, but a version superseded by the date passing (its successor,
// published earlier, comes into force at UTC+8 midnight) kept every
// instance it pooled while in force (up to MaxInstances, each with the
// memory it grew) until the next upload or restart, though only bills
// dated before its successor's date may still call it. The periodic
// sweep (Versions.SweepIdle, every idleSweepInterval in Run) closes the
// idle instances of a version not in force today that was not called
// since the sweep before; a late bill of its dates instantiates afresh.
func TestR5VersionSupersededByTheDateReleasesItsInstances(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, map[string][]string{"371600": {empActive}})))
	wasm := referenceWasm(t, "371600", "v2023")
	cs := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	// 2026-12-31 in UTC+8: v2026 in force, v2027 scheduled for tomorrow.
	clock := time.Date(2026, 12, 31, 12, 0, 0, 0, ledger.ChinaTime)
	h.versions.now = func() time.Time { return clock }
	for _, u := range []struct{ version, eff string }{{"v2026", "2026-01-01"}, {"v2027", "2027-01-01"}} {
		if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", u.version, u.eff, wasm, cs, key)); status != 201 {
			t.Fatalf("upload %s: %d %s", u.version, status, out)
		}
	}
	ver, _ := h.policies.Lookup("371600", 20260601)
	old := ver.Module.(*engine.Module)
	ver, _ = h.policies.Lookup("371600", 20270101)
	neu := ver.Module.(*engine.Module)
	// v2026 in force: its pool grows as concurrent calls need.
	parsed, err := cases.Parse(cs)
	if err != nil {
		t.Fatal(err)
	}
	in, err := parsed[0].ABI()
	if err != nil {
		t.Fatal(err)
	}
	enc := in.AppendBinary(nil)
	// Bursts of concurrent calls until it has more than one (how many
	// overlap depends on the scheduler).
	for burst := 0; old.Live() < 2 && burst < 50; burst++ {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for range 50 {
					var out abi.Output
					if err := old.Call(context.Background(), in, enc, &out); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		close(start)
		wg.Wait()
	}
	pooled := old.Live()
	if pooled < 2 {
		t.Fatalf("v2026 pooled %d instances under concurrent calls", pooled)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	h.versions.SweepIdle()
	if n := old.Live(); n != pooled {
		t.Errorf("v2026, in force today, lost instances to the sweep: %d of %d", n, pooled)
	}
	// Midnight passes: v2027 is in force. Nothing was uploaded.
	clock = time.Date(2027, 1, 1, 0, 0, 1, 0, ledger.ChinaTime)
	var out abi.Output
	if err := neu.Call(context.Background(), in, enc, &out); err != nil {
		t.Fatal(err)
	}
	heap()
	before := heap()
	for range 2 {
		h.versions.SweepIdle() // the first sees v2026's use of the day before
	}
	after := heap()
	if n := old.Live(); n != 0 {
		t.Errorf("v2026, superseded by the date, keeps %d idle instances after two sweeps", n)
	}
	if neu.Live() == 0 {
		t.Error("v2027, in force today, lost its instance to the sweep")
	}
	t.Logf("%d instances of v2026 released: heap %d → %d bytes (%.1f MiB freed)", pooled, before, after, (float64(before)-float64(after))/(1<<20))
	// Each holds its linear memory (2.8 MiB once instantiated for the
	// reference policies): at least 1 MiB each is freed.
	if after+uint64(pooled)<<20 > before {
		t.Errorf("the sweep freed %d bytes for %d instances; want at least 1 MiB each", int64(before)-int64(after), pooled)
	}
	// A late bill of v2026's dates still settles under it.
	body := settleBody("R5-LATE", "EMP1", "371600", `{"type":"chronic","visit_date":"2026-11-30"}`, oneLine)
	if status, out := h.do("POST", "/v1/settlements", "tok-H3716020001", body); status != 200 || !strings.Contains(string(out), `"v2026"`) {
		t.Fatalf("a late bill of 2026: %d %s", status, out)
	}
	// And a version called since the last sweep keeps its instance.
	if old.Live() == 0 {
		t.Fatal("no instance after the late bill")
	}
	h.versions.SweepIdle()
	if old.Live() == 0 {
		t.Error("v2026, called since the last sweep, lost its instance")
	}
	h.versions.SweepIdle()
	if old.Live() != 0 {
		t.Error("v2026, not called for a whole sweep, keeps its instance")
	}
}

// TestR5ActiveVersionsAreBounded: every version not withdrawn stays
// loaded, its module compiled in memory (about 4.5 MiB of heap and 15 MiB
// of resident memory for a 2.4 MB reference module; a module may be 16
// MiB), and nothing bounded how many a region kept: a region's token,
// compromised or in a broken deployment loop, could publish until the
// gateway ran out of memory. A region keeps at most maxActive versions
// not withdrawn: one more is 409 too_many_versions naming the limit, and
// nothing is written; a version withdrawn makes room again; the retry of
// a version already published is still its replay.
func TestR5ActiveVersionsAreBounded(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, nil)))
	if h.versions.maxActive != MaxActiveVersions || MaxActiveVersions < 16 {
		t.Fatalf("the bound is %d (MaxActiveVersions %d)", h.versions.maxActive, MaxActiveVersions)
	}
	h.versions.maxActive = 4 // v2023 and v2024 of the world, and two uploads
	wasm := referenceWasm(t, "371600", "v2023")
	cs := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	up := func(version, eff string) (int, []byte) {
		return h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", version, eff, wasm, cs, key))
	}
	for _, v := range []string{"v2031", "v2032"} {
		if status, out := up(v, v[1:]+"-01-01"); status != 201 {
			t.Fatalf("upload %s: %d %s", v, status, out)
		}
	}
	_, listed := h.do("GET", "/v1/regions/371600/policies", "tok-region-371600", nil)
	status, out := up("v2033", "2033-01-01")
	a := decodeAnswer(t, out)
	if status != 409 || a.Error == nil || a.Error.Code != "too_many_versions" || a.Error.Field != "version" || !strings.Contains(a.Error.Message, "4") {
		t.Fatalf("a fifth version: %d %s; want 409 too_many_versions naming the limit 4", status, out)
	}
	if _, now := h.do("GET", "/v1/regions/371600/policies", "tok-region-371600", nil); string(now) != string(listed) {
		t.Errorf("a refused upload changed the versions:\n%s\nnow\n%s", listed, now)
	}
	if ver, _ := h.policies.Lookup("371600", 20330601); ver.Name != "v2032" {
		t.Errorf("2033 resolves to %s", ver.Name)
	}
	// The retry of a published version is answered as before.
	if status, out := up("v2032", "2032-01-01"); status != 200 || !strings.Contains(string(out), `"replayed":true`) {
		t.Errorf("retry of v2032 at the bound: %d %s", status, out)
	}
	// A withdrawal makes room.
	if status, out := h.do("POST", "/v1/regions/371600/policies/v2032/withdraw", "tok-region-371600", nil); status != 200 {
		t.Fatalf("withdraw: %d %s", status, out)
	}
	if status, out := up("v2033", "2033-01-01"); status != 201 {
		t.Fatalf("upload after a withdrawal: %d %s", status, out)
	}
}

// TestR5UploadRefusedOnALowDisk: the policy store lies under the ledger's
// directory (<db>/policies), on its disk. While that disk is nearly full
// the ledger refuses every write (503 ledger_disk_full) to keep the room
// Pebble needs for what is in flight and its compactions, but a policy
// upload still wrote its module (up to 16 MiB, and again with each new
// version) into that room. It is refused the same way, nothing stored;
// the retry of a version already published, which writes nothing, is
// still its replay.
func TestR5UploadRefusedOnALowDisk(t *testing.T) {
	h := newHarness(t, withRegionKeys(refWorld(t, nil)))
	var free atomic.Uint64
	free.Store(1 << 40)
	h.stop()
	h.minFree, h.freeSpace = 1<<30, func(string) (uint64, error) { return free.Load(), nil }
	h.start()
	wasm := referenceWasm(t, "371600", "v2023")
	cs := readCases(t, "371600-v2023.json")
	key := demoKey("371600")
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", "v2031", "2031-01-01", wasm, cs, key)); status != 201 {
		t.Fatalf("upload: %d %s", status, out)
	}
	free.Store(1<<30 - 1)
	for deadline := time.Now().Add(5 * time.Second); !h.db.LowDisk(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the low disk was not noticed in 5 s")
		}
	}
	_, listed := h.do("GET", "/v1/regions/371600/policies", "tok-region-371600", nil)
	other := append(append([]byte(nil), wasm...), 0, 3, 1, 'x', 1) // another module: a custom section
	resp, err := h.roundTrip("POST", "/v1/regions/371600/policies", "tok-region-371600", "application/json", upload("371600", "v2032", "2032-01-01", other, cs, key), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a := decodeAnswer(t, resp.Body())
	if resp.StatusCode() != 503 || a.Error == nil || a.Error.Code != "ledger_disk_full" || string(resp.Header.Peek("Retry-After")) == "" {
		t.Errorf("upload on a full disk: %d %s (Retry-After %q); want 503 ledger_disk_full", resp.StatusCode(), resp.Body(), resp.Header.Peek("Retry-After"))
	}
	if _, now := h.do("GET", "/v1/regions/371600/policies", "tok-region-371600", nil); string(now) != string(listed) {
		t.Errorf("an upload refused for the disk changed the versions:\n%s\nnow\n%s", listed, now)
	}
	sum := sha256.Sum256(other)
	if _, err := h.versions.store.Module(hex.EncodeToString(sum[:])); err == nil {
		t.Error("an upload refused for the disk stored its module")
	}
	if status, out := h.do("POST", "/v1/regions/371600/policies", "tok-region-371600", upload("371600", "v2031", "2031-01-01", wasm, cs, key)); status != 200 {
		t.Errorf("the retry of a published version on a full disk: %d %s", status, out)
	}
}
