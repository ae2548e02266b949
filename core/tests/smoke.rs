use browserpool::{testing::FakeLauncher, Pool, PoolConfig};
use std::time::Duration;

#[tokio::test]
async fn smoke() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .try_init();
    let root = tempfile::tempdir().unwrap();
    let config = PoolConfig {
        root: root.path().to_owned(),
        ..PoolConfig::default()
    };
    let pool = Pool::new(config, FakeLauncher::new()).await.unwrap();
    eprintln!("built");
    let lease = tokio::time::timeout(Duration::from_secs(5), pool.acquire())
        .await
        .unwrap()
        .unwrap();
    eprintln!("acquired {}", lease.id());
    tokio::time::timeout(Duration::from_secs(5), pool.destroy(lease.id()))
        .await
        .unwrap()
        .unwrap();
    eprintln!("destroyed");
    tokio::time::timeout(Duration::from_secs(5), pool.shutdown())
        .await
        .unwrap();
    eprintln!("shut down");
}
