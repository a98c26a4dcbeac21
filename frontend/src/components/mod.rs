//! Reusable pieces of the app shell and of pages, one component per file.

mod annotation_panel;
mod app_header;
mod icon;
mod not_available;
mod page_header;
mod section_card;
mod server_status_badge;
mod server_status_card;
mod side_nav;

pub use annotation_panel::{AnnotationPanel, PanelState};
pub use app_header::AppHeader;
pub use icon::{BrandMark, Icon};
pub use not_available::NotAvailable;
pub use page_header::PageHeader;
pub use section_card::SectionCard;
pub use server_status_badge::ServerStatusBadge;
pub use server_status_card::ServerStatusCard;
pub use side_nav::SideNav;
