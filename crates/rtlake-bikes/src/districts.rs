//! Station → district (gu): point-in-polygon over Seoul's 25 districts, the nearest district for
//! the few stations outside every (simplified) polygon.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// One district.
#[derive(Clone, Debug)]
pub struct District {
    /// KOSTAT code, e.g. `11250`.
    pub code: String,
    /// Korean name, e.g. `강동구`.
    pub name: String,
    /// English name, e.g. `Gangdong-gu`: the value of the `district` columns.
    pub name_eng: String,
    /// Rings as (lon, lat); the first is the outline, any others are holes.
    rings: Vec<Vec<(f64, f64)>>,
    bbox: (f64, f64, f64, f64),
}

/// The districts of a GeoJSON FeatureCollection of Polygons/MultiPolygons.
#[derive(Clone, Debug)]
pub struct Districts {
    items: Vec<District>,
}

#[derive(Deserialize)]
struct Fc {
    features: Vec<Feature>,
}
#[derive(Deserialize)]
struct Feature {
    properties: Props,
    geometry: Geometry,
}
#[derive(Deserialize)]
struct Props {
    code: String,
    name: String,
    name_eng: String,
}
#[derive(Deserialize)]
#[serde(tag = "type", content = "coordinates")]
enum Geometry {
    Polygon(Vec<Vec<[f64; 2]>>),
    MultiPolygon(Vec<Vec<Vec<[f64; 2]>>>),
}

/// The 25 districts of Seoul as GeoJSON (the recorded data's simplified polygons).
pub const BUILTIN_GEOJSON: &str = include_str!("../../../data/seoul-bike/seoul_districts.geojson");

impl Districts {
    /// Seoul's 25 districts, built into the binary.
    pub fn builtin() -> Self {
        // The built-in file is parsed by a unit test; failing here would be a build defect.
        Self::from_geojson(BUILTIN_GEOJSON).expect("built-in districts parse")
    }

    /// Parses a FeatureCollection whose features have `code`, `name` and `name_eng`.
    pub fn from_geojson(text: &str) -> Result<Self, String> {
        let fc: Fc = serde_json::from_str(text).map_err(|e| format!("districts GeoJSON: {e}"))?;
        let items = fc
            .features
            .into_iter()
            .map(|f| {
                let rings: Vec<Vec<(f64, f64)>> = match f.geometry {
                    Geometry::Polygon(r) => r,
                    Geometry::MultiPolygon(p) => p.into_iter().flatten().collect(),
                }
                .into_iter()
                .map(|ring| ring.into_iter().map(|[x, y]| (x, y)).collect())
                .collect();
                let pts = rings.iter().flatten();
                let bbox = pts.fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |b, &(x, y)| {
                    (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y))
                });
                District {
                    code: f.properties.code,
                    name: f.properties.name,
                    name_eng: f.properties.name_eng,
                    rings,
                    bbox,
                }
            })
            .collect();
        Ok(Self { items })
    }

    /// All districts.
    pub fn all(&self) -> &[District] {
        &self.items
    }

    /// The district containing the point, else the nearest one; `None` only without districts.
    pub fn locate(&self, lat: f64, lon: f64) -> Option<&District> {
        let inside = self.items.iter().find(|d| {
            let (x0, y0, x1, y1) = d.bbox;
            lon >= x0 && lon <= x1 && lat >= y0 && lat <= y1 && contains(&d.rings, lon, lat)
        });
        inside.or_else(|| {
            let k = lat.to_radians().cos();
            self.items
                .iter()
                .map(|d| (distance2(&d.rings, lon, lat, k), d))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, d)| d)
        })
    }
}

/// Even-odd rule over all rings, so holes are outside.
fn contains(rings: &[Vec<(f64, f64)>], x: f64, y: f64) -> bool {
    let mut inside = false;
    for ring in rings {
        let n = ring.len();
        for i in 0..n {
            let (xi, yi) = ring[i];
            let (xj, yj) = ring[(i + n - 1) % n];
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
        }
    }
    inside
}

/// Squared distance to the nearest edge, longitudes scaled by cos(lat) so degrees are comparable.
fn distance2(rings: &[Vec<(f64, f64)>], x: f64, y: f64, k: f64) -> f64 {
    let mut best = f64::MAX;
    for ring in rings {
        for w in ring.windows(2) {
            let (ax, ay, bx, by) = (w[0].0 * k, w[0].1, w[1].0 * k, w[1].1);
            let (px, py) = (x * k, y);
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = dx * dx + dy * dy;
            let t = if len2 == 0.0 {
                0.0
            } else {
                (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
            };
            let (cx, cy) = (ax + t * dx - px, ay + t * dy - py);
            best = best.min(cx * cx + cy * cy);
        }
    }
    best
}

/// Station → district by point-in-polygon (the stream-static join), cached per coordinate.
pub struct DistrictCache {
    districts: Districts,
    /// District by exact coordinates: stations do not move, and polygons are costly. At most
    /// [`DistrictCache::MAX`] entries: coordinates that wander would otherwise grow it forever.
    cache: HashMap<(u64, u64), Option<Arc<str>>>,
}

impl Default for DistrictCache {
    fn default() -> Self {
        Self {
            districts: Districts::builtin(),
            cache: HashMap::new(),
        }
    }
}

impl DistrictCache {
    /// The most coordinates cached (Seoul has about 2,700 stations); past it the cache starts
    /// over.
    pub const MAX: usize = 100_000;

    /// The district of a point.
    pub fn district(&mut self, lat: f64, lon: f64) -> Option<Arc<str>> {
        if self.cache.len() >= Self::MAX {
            self.cache.clear();
        }
        let districts = &self.districts;
        self.cache
            .entry((lat.to_bits(), lon.to_bits()))
            .or_insert_with(|| {
                districts
                    .locate(lat, lon)
                    .map(|d| Arc::from(d.name_eng.as_str()))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded_and_right() {
        let mut c = DistrictCache::default();
        for i in 0..DistrictCache::MAX as u64 {
            c.cache.insert((i, 0), None);
        }
        assert_eq!(
            c.district(37.5556488, 126.91062927).as_deref(),
            Some("Mapo-gu")
        );
        assert_eq!(c.cache.len(), 1, "a full cache starts over");
    }

    #[test]
    fn known_stations_land_in_their_districts() {
        let d = Districts::builtin();
        assert_eq!(d.all().len(), 25);
        // ST-4, 망원역 1번출구 (Mangwon station) is in Mapo-gu.
        assert_eq!(
            d.locate(37.5556488, 126.91062927).unwrap().name_eng,
            "Mapo-gu"
        );
        // Jamsil, in Songpa-gu.
        assert_eq!(d.locate(37.5133, 127.1001).unwrap().name_eng, "Songpa-gu");
        // Far out at sea: the nearest district still answers.
        assert!(d.locate(37.0, 126.0).is_some());
    }

    #[test]
    fn every_recorded_station_gets_a_district() {
        let d = Districts::builtin();
        let csv = include_str!("../../../data/seoul-bike/stations.csv");
        let mut outside = 0;
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (lat, lon): (f64, f64) = (
                f[f.len() - 5].parse().unwrap(),
                f[f.len() - 4].parse().unwrap(),
            );
            let inside = d.items.iter().any(|x| contains(&x.rings, lon, lat));
            outside += usize::from(!inside);
            assert!(d.locate(lat, lon).is_some());
        }
        assert!(
            outside < 100,
            "{outside} stations fall outside every polygon"
        );
    }
}
