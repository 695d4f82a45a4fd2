//! Reading a QR code from an image file (a screenshot of the set-up page, a photo).

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("cannot read the image {0}: {1}")]
    Image(String, String),
    #[error("no QR code found in {0}")]
    NotFound(String),
    #[error("the QR code in {0} could not be decoded: {1}")]
    Decode(String, String),
}

/// The text of the first QR code found in the image at `path`.
pub fn read(path: &std::path::Path) -> Result<String, QrError> {
    let name = path.display().to_string();
    let img = image::open(path)
        .map_err(|e| QrError::Image(name.clone(), e.to_string()))?
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    let grid = grids
        .first()
        .ok_or_else(|| QrError::NotFound(name.clone()))?;
    grid.decode()
        .map(|(_, text)| text)
        .map_err(|e| QrError::Decode(name, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws `text` as a QR code PNG, like a screenshot of the set-up page.
    pub fn write_qr_png(text: &str, path: &std::path::Path) {
        let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
        let w = code.width();
        let colors = code.to_colors();
        let (scale, quiet) = (6u32, 4u32);
        let side = (w as u32 + 2 * quiet) * scale;
        let img = image::GrayImage::from_fn(side, side, |x, y| {
            let (cx, cy) = (x / scale, y / scale);
            let dark = cx >= quiet
                && cy >= quiet
                && cx < quiet + w as u32
                && cy < quiet + w as u32
                && colors[((cy - quiet) as usize) * w + (cx - quiet) as usize]
                    == qrcode::Color::Dark;
            image::Luma([if dark { 0 } else { 255 }])
        });
        img.save(path).unwrap();
    }

    #[test]
    fn reads_back_what_was_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qr.png");
        let text = "otpauth://totp/Example:me?secret=JBSWY3DPEHPK3PXP&issuer=Example";
        write_qr_png(text, &path);
        assert_eq!(read(&path).unwrap(), text);
        let blank = dir.path().join("blank.png");
        image::GrayImage::from_pixel(100, 100, image::Luma([255]))
            .save(&blank)
            .unwrap();
        assert!(matches!(read(&blank), Err(QrError::NotFound(_))));
        std::fs::write(dir.path().join("not.png"), "hello").unwrap();
        assert!(matches!(
            read(&dir.path().join("not.png")),
            Err(QrError::Image(..))
        ));
    }
}
