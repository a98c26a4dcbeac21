//! The cache's precisions, growth, limits and shared prefixes (read through
//! views, flattened, truncated, chained two levels deep).

use super::*;

fn steps(cache: &mut Cache, t: usize, seed: f32) -> (Tensor, Tensor) {
    let n = 2 * 3 * t * 4;
    let k: Vec<f32> = (0..n).map(|i| seed + i as f32).collect();
    let v: Vec<f32> = (0..n).map(|i| -seed - i as f32).collect();
    let k = Tensor::from_vec(k, (2, 3, t, 4), &Device::Cpu).unwrap();
    let v = Tensor::from_vec(v, (2, 3, t, 4), &Device::Cpu).unwrap();
    cache.append(0, &k, &v).unwrap();
    (k, v)
}

#[test]
fn an_f16_cache_rounds_what_it_stores_and_halves_its_bytes() {
    let mut wide = Cache::new(1, 1000);
    let mut half = Cache::with_precision(1, 1000, KvPrecision::F16);
    steps(&mut wide, 70, 0.1);
    let (k, _) = steps(&mut half, 70, 0.1);
    assert_eq!(2 * half.bytes(), wide.bytes());
    let l = &half.layers[0];
    let got = l
        .tensor(&l.k)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want: Vec<f32> = k
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|&x| f16::from_f32(x).to_f32())
        .collect();
    assert_eq!(got, want);
    // A decode step (one sequence) sees stored values through its view.
    let mut one = Cache::with_precision(1, 1000, KvPrecision::F16);
    let view = one.push(0, 3, &[0.5; 12], &[0.25; 12]).unwrap();
    assert_eq!(view.len(), 1);
    // The last head's first position: `[heads, capacity, d]`.
    let last = 2 * view.own.capacity * 4 + 3;
    match view.own.kv {
        KvSlices::F16 { k, v } => assert_eq!((k[last].to_f32(), v[last].to_f32()), (0.5, 0.25)),
        KvSlices::F32 { .. } => panic!("an f16 cache gave f32 values"),
    }
}

/// Pushes positions `from..to` of a recognisable pattern to both layers.
fn push_range(cache: &mut Cache, from: usize, to: usize, seed: f32) {
    for p in from..to {
        for layer in 0..2 {
            let k: Vec<f32> = (0..12).map(|i| seed + (p * 12 + i) as f32).collect();
            let v: Vec<f32> = k.iter().map(|x| -x).collect();
            cache.push(layer, 3, &k, &v).unwrap();
        }
    }
}

/// The lengths of a view's runs, shared ones first.
fn lens(view: &LayerView<'_>) -> Vec<usize> {
    let shared = view.prefix.iter().flatten().map(|p| p.len);
    shared.chain([view.own.len]).collect()
}

/// Every position of one layer's keys, `[heads, len, d]`, as f32.
fn keys(cache: &Cache, layer: usize) -> Vec<f32> {
    let l = &cache.layers[layer];
    l.tensor(&l.k)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn a_shared_prefix_reads_like_a_copy_until_flattened() {
    let mut stored = Cache::with_precision(2, 1000, KvPrecision::F16);
    push_range(&mut stored, 0, 70, 0.0);
    let stored = Arc::new(stored);
    // A sequence on the first 50 positions, then 30 of its own.
    let mut shared = Cache::on_prefix(Arc::clone(&stored), 50).unwrap();
    assert_eq!((shared.len(), shared.bytes()), (50, 0));
    push_range(&mut shared, 50, 80, 1000.0);
    let view = shared.push(1, 3, &[7.0; 12], &[7.0; 12]).unwrap();
    assert_eq!(lens(&view), [50, 31]);
    assert_eq!(shared.len_of(1), 81);
    // The same positions written into one flat cache.
    let mut flat = Cache::with_precision(2, 1000, KvPrecision::F16);
    push_range(&mut flat, 0, 50, 0.0);
    push_range(&mut flat, 50, 80, 1000.0);
    let mut copied = shared.clone();
    copied.truncate(80);
    copied.flatten().unwrap();
    assert_eq!(copied.len(), 80);
    assert_eq!(keys(&copied, 0), keys(&flat, 0));
    assert_eq!(keys(&copied, 1), keys(&flat, 1));
    // Truncating into the shared part drops the cache's own positions.
    let mut short = shared.clone();
    short.truncate(40);
    assert_eq!((short.len(), short.len_of(1)), (40, 40));
    short.flatten().unwrap();
    let mut want = Cache::with_precision(2, 1000, KvPrecision::F16);
    push_range(&mut want, 0, 40, 0.0);
    assert_eq!(keys(&short, 0), keys(&want, 0));
    // A prefix of a cache that is itself on a prefix: within the first
    // part it shares the stored cache; past it, it starts on that cache,
    // its positions read through both and nothing copied.
    let inner = Cache::on_prefix(Arc::new(shared.clone()), 45).unwrap();
    assert!(Arc::ptr_eq(inner.base().unwrap(), &stored));
    let middle = Arc::new(shared.compacted());
    let mut outer = Cache::on_prefix(Arc::clone(&middle), 60).unwrap();
    assert!(Arc::ptr_eq(outer.base().unwrap(), &middle));
    assert!(Arc::ptr_eq(outer.root().unwrap(), &stored));
    assert_eq!((outer.len(), outer.bytes()), (60, 0));
    let view = outer.push(1, 3, &[7.0; 12], &[7.0; 12]).unwrap();
    assert_eq!(lens(&view), [50, 10, 1]);
    outer.truncate(60);
    let mut flat_outer = outer.clone();
    flat_outer.flatten().unwrap();
    let mut want = Cache::with_precision(2, 1000, KvPrecision::F16);
    push_range(&mut want, 0, 50, 0.0);
    push_range(&mut want, 50, 60, 1000.0);
    assert_eq!(keys(&flat_outer, 0), keys(&want, 0));
    assert_eq!(keys(&flat_outer, 1), keys(&want, 1));
    // A third shared cache is one too many: a cache past `outer`'s
    // shared positions starts on `middle` and copies `outer`'s own, in
    // buffers of their size.
    let mut third = outer.clone();
    push_range(&mut third, 60, 66, 2000.0);
    let mut deep = Cache::on_prefix(Arc::new(third.compacted()), 64).unwrap();
    assert!(Arc::ptr_eq(deep.base().unwrap(), &middle));
    assert_eq!(
        (deep.len(), deep.layers[1].len, deep.layers[1].capacity),
        (64, 4, 4)
    );
    deep.flatten().unwrap();
    push_range(&mut want, 60, 64, 2000.0);
    assert_eq!(keys(&deep, 0), keys(&want, 0));
    assert_eq!(keys(&deep, 1), keys(&want, 1));
    outer.reset();
    assert!(outer.is_empty());
    // The tensor path copies the prefix in before appending.
    let mut tensors = Cache::on_prefix(Arc::clone(&stored), 20).unwrap();
    let k = Tensor::ones((1, 3, 2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let (all, _) = tensors.append(0, &k, &k).unwrap();
    assert_eq!(all.dims(), &[1, 3, 22, 4]);
    let got: Vec<f32> = all
        .narrow(2, 0, 20)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut want = Cache::with_precision(2, 1000, KvPrecision::F16);
    push_range(&mut want, 0, 20, 0.0);
    assert_eq!(got, keys(&want, 0));
    assert!(tensors.shared.is_none());
}

#[test]
fn appends_grow_and_return_every_position_in_order() {
    let mut cache = Cache::new(1, 1000);
    let mut ks = Vec::new();
    let mut vs = Vec::new();
    // 100 positions force two growths past the first allocation.
    for (i, t) in [5, 1, 60, 34].into_iter().enumerate() {
        let (k, v) = steps(&mut cache, t, 1000.0 * i as f32);
        ks.push(k);
        vs.push(v);
    }
    let l = &cache.layers[0];
    let (k, v) = (l.tensor(&l.k).unwrap(), l.tensor(&l.v).unwrap());
    let want_k = Tensor::cat(&ks, 2).unwrap();
    let want_v = Tensor::cat(&vs, 2).unwrap();
    assert_eq!(cache.len(), 100);
    assert_eq!(
        k.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        want_k.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    assert_eq!(
        v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        want_v.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

#[test]
fn context_length_and_shape_are_enforced() {
    let mut cache = Cache::new(1, 6);
    steps(&mut cache, 5, 0.0);
    let err = cache
        .append(
            0,
            &Tensor::zeros((2, 3, 2, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
            &Tensor::zeros((2, 3, 2, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("context length 6"), "{err}");
    let err = cache.push(0, 3, &[0.0; 12], &[0.0; 12]).err().unwrap();
    assert!(err.to_string().contains("[2, 3, _, 4]"), "{err}");
}
