package stack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/glb-project/glb/bpf"
	"github.com/glb-project/glb/director/table"
)

// KernelRows reads the forwarding tables a director has installed in the
// kernel, straight from its pinned maps (glb_tables, an array of table
// maps): for each installed table, its 65,536 rows in the format of
// `glbctl table rows` ("row\thop,hop"), joined by newlines. The result is
// sorted, so two directors holding the same tables in different slots
// compare equal.
func (d *Director) KernelRows() ([]string, error) {
	outer, err := ebpf.LoadPinnedMap(filepath.Join(d.BPFFS, "glb_tables"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("%s: open pinned glb_tables: %w", d.Name, err)
	}
	defer outer.Close()
	var tables []string
	for slot := uint32(0); slot < outer.MaxEntries(); slot++ {
		var id uint32
		if err := outer.Lookup(slot, &id); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue
			}
			return nil, fmt.Errorf("%s: glb_tables[%d]: %w", d.Name, slot, err)
		}
		if id == 0 {
			continue
		}
		rows, err := readTable(ebpf.MapID(id))
		if err != nil {
			return nil, fmt.Errorf("%s: table in slot %d: %w", d.Name, slot, err)
		}
		tables = append(tables, rows)
	}
	sort.Strings(tables)
	return tables, nil
}

func readTable(id ebpf.MapID) (string, error) {
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return "", err
	}
	defer m.Close()
	var meta bpf.DirectorTableRow
	if err := m.Lookup(uint32(table.NumRows), &meta); err != nil {
		return "", fmt.Errorf("read the table's settings: %w", err)
	}
	width := int(meta.Hops[5])
	var b strings.Builder
	var row bpf.DirectorTableRow
	for r := uint32(0); r < table.NumRows; r++ {
		if err := m.Lookup(r, &row); err != nil {
			return "", fmt.Errorf("row %d: %w", r, err)
		}
		fmt.Fprintf(&b, "%d\t", r)
		for i := 0; i < width && i < len(row.Hops); i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			var a [4]byte
			// The loader stores each address's bytes in network order.
			binary.LittleEndian.PutUint32(a[:], row.Hops[i])
			b.WriteString(netip.AddrFrom4(a).String())
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// ConfigRows is `glbctl table rows` for the stack's table as the state
// file says it (every host counted healthy), for comparison with
// KernelRows.
func (s *Stack) ConfigRows() (string, error) {
	cfgFile := s.StateFile
	if s.cfg.Consul {
		out, err := s.Ctl("state", "export")
		if err != nil {
			return "", err
		}
		cfgFile = filepath.Join(s.cfg.Dir, "state-export.json")
		if err := writeFileAtomic(cfgFile, []byte(out)); err != nil {
			return "", err
		}
	}
	cmd := s.Router.Command(bgCtx, s.cfg.Bin.Ctl, "table", "rows", "--config", cfgFile, "--table", TableName)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("glbctl table rows: %w", err)
	}
	return string(out), nil
}
