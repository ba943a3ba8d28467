import re,sys,glob,os
units={'B':1,'KB':1e3,'MB':1e6,'GB':1e9,'TB':1e12}
def parse(path):
    w={}
    for line in open(path):
        m=re.match(r'\s*(\d|total)\s*\|',line)
        if not m: continue
        cols=line.split('|')
        lvl=cols[0].strip()
        written=cols[6].split()
        size=written[1]
        mm=re.match(r'([\d.]+)([KMGT]?B)',size)
        w[lvl]=float(mm.group(1))*units[mm.group(2)]
    return w
d=sys.argv[1]
for b in sorted(glob.glob(d+'/ledger-*-before.txt')):
    name=os.path.basename(b)[7:-11]
    a=b.replace('-before','-after')
    if not os.path.exists(a): continue
    wb,wa=parse(b),parse(a)
    delta={k:wa.get(k,0)-wb.get(k,0) for k in wa}
    flush=delta.get('0',0)
    comp=sum(v for k,v in delta.items() if k not in ('0','total'))
    lv=' '.join('L%s %4.0f'%(k,delta[k]/1e6) for k in '3456' )
    print('%-18s flushed %5.0f MB  compactions wrote %5.0f MB (%s)  ratio %.2f'%(name,flush/1e6,comp/1e6,lv,comp/flush if flush else 0))
